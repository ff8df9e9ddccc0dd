"""Errors arrive in OpenAI's shape, so the official client raises its typed exceptions; abuse
(malformed JSON, huge bodies, disconnects mid-stream, a full queue) leaves the server healthy."""

from __future__ import annotations

import json
import threading
import time

import httpx
import openai
import pytest

from tests.serve.conftest import API_KEY, ServerProcess, metric

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def assert_error_shape(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    assert "Traceback" not in response.text
    return error


def assert_healthy(server) -> None:
    assert httpx.get(server.url + "/health").status_code == 200
    r = httpx.post(server.url + "/v1/completions", headers=AUTH, json={"prompt": "ok", "max_tokens": 2}, timeout=30)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] >= 1


@pytest.mark.parametrize("kwargs, param", [
    (dict(max_tokens=251), "max_tokens"),  # above the server's --max-tokens 250
    (dict(max_tokens=0), "max_tokens"),
    (dict(temperature=2.5), "temperature"),
    (dict(top_p=0), "top_p"),
    (dict(n=0), "n"),
    (dict(stop=[f"s{i}" for i in range(65)]), "stop"),  # completions take up to 64 (lm-eval sends until + EOS)
    (dict(logprobs=21), "logprobs"),  # OpenAI's limit is 20
])
def test_invalid_parameters_are_400(client, tiny_run, kwargs, param):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=tiny_run.name, prompt="hello", **kwargs)
    assert e.value.status_code == 400
    assert e.value.body["param"] == param or param in e.value.body["message"]


def test_over_long_prompt_is_400(client, tiny_run):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=tiny_run.name, prompt="cat " * 400, max_tokens=4)
    assert e.value.body["code"] == "context_length_exceeded"
    assert "256" in e.value.message  # names the context window
    # a prompt that fits but leaves too little room for max_tokens
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=tiny_run.name, prompt=[65] * 220, max_tokens=64)
    assert e.value.body["code"] == "context_length_exceeded"


def test_missing_or_wrong_api_key_is_401(server, tiny_run):
    with openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0) as c:
        with pytest.raises(openai.AuthenticationError):
            c.models.list()
        with pytest.raises(openai.AuthenticationError):
            c.chat.completions.create(model=tiny_run.name, messages=[{"role": "user", "content": "hi"}])
    # no key at all (the client refuses to send none, so plain HTTP)
    error = assert_error_shape(httpx.get(server.url + "/v1/models"), 401)
    assert error["type"] == "authentication_error"
    assert_error_shape(httpx.post(server.url + "/v1/completions", json={"prompt": "hi"}), 401)
    assert_error_shape(httpx.get(server.url + "/metrics"), 401)


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.completions.create(model="gpt-4o", prompt="hi", max_tokens=2)
    assert e.value.body["code"] == "model_not_found"


def test_malformed_json_and_wrong_types_are_400(server):
    url = server.url + "/v1/chat/completions"
    headers = {**AUTH, "Content-Type": "application/json"}
    error = assert_error_shape(httpx.post(url, headers=headers, content=b'{"messages": [}'), 400)
    assert error["code"] == "invalid_json"
    assert_error_shape(httpx.post(url, headers=headers, content=b"\xff\xfe not json"), 400)
    assert_error_shape(httpx.post(url, headers=headers, json={"messages": "hi"}), 400)
    assert_error_shape(httpx.post(url, headers=headers, json={"messages": []}), 400)
    assert_error_shape(httpx.post(url, headers=headers, json={"messages": [{"role": "wizard", "content": "x"}]}), 400)
    assert_error_shape(httpx.post(server.url + "/v1/completions", headers=headers, json={}), 400)
    assert_error_shape(httpx.get(server.url + "/v1/nothing-here", headers=AUTH), 404)
    assert_healthy(server)


def test_huge_bodies_are_413(server):
    url = server.url + "/v1/completions"
    big = json.dumps({"prompt": "x" * 200_000, "max_tokens": 2}).encode()
    error = assert_error_shape(httpx.post(url, headers={**AUTH, "Content-Type": "application/json"}, content=big), 413)
    assert error["code"] == "body_too_large"

    def chunked():  # no Content-Length: the limit must hold while reading
        for i in range(0, len(big), 8192):
            yield big[i:i + 8192]

    assert_error_shape(httpx.post(url, headers={**AUTH, "Content-Type": "application/json"}, content=chunked()), 413)
    assert_healthy(server)


def test_client_disconnect_mid_stream_frees_the_batch(server, tiny_run):
    cancelled = metric(server.url, "slm_sequences_finished_total", reason="cancelled")
    generated = metric(server.url, "slm_generated_tokens_total")
    body = {"model": tiny_run.name, "prompt": "Once", "max_tokens": 250, "stream": True, "temperature": 1.0,
            "ignore_eos": True}
    for _ in range(3):
        with httpx.stream("POST", server.url + "/v1/completions", headers=AUTH, json=body, timeout=30) as r:
            lines = r.iter_lines()
            assert next(line for line in lines if line.startswith("data:"))
        # the context manager closed the connection after the first chunk
    deadline = time.monotonic() + 10
    while metric(server.url, "slm_sequences_finished_total", reason="cancelled") < cancelled + 3:
        assert time.monotonic() < deadline, "disconnected streams were not cancelled"
        time.sleep(0.05)
    assert metric(server.url, "slm_running_sequences") == 0
    # the cancelled sequences stopped early: fewer than the 3 * 250 tokens asked for were generated
    assert metric(server.url, "slm_generated_tokens_total") - generated < 3 * 250
    assert_healthy(server)


def test_full_queue_is_429_and_recovers(tmp_path):
    from tests.serve.tiny_run import make_tiny_run

    # a long context, so the request holding the only batch row cannot finish during the test
    run = make_tiny_run(tmp_path / "long", max_seq_len=4096)
    server = ServerProcess(run, tmp_path / "queue.log", "--max-batch", "1", "--max-queue", "1",
                           "--max-tokens", "4000")
    try:
        with openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0) as client:
            # a request with more sequences than the queue holds is refused whole
            with pytest.raises(openai.RateLimitError):
                client.completions.create(model="long", prompt="hi", max_tokens=2, n=2)
            running = client.completions.create(model="long", prompt="Once", max_tokens=4000, stream=True,
                                                extra_body={"ignore_eos": True})
            next(iter(running))  # this request holds the only batch row
            waiting = []
            thread = threading.Thread(target=lambda: waiting.append(
                client.completions.create(model="long", prompt="The dog", max_tokens=4)))
            thread.start()
            deadline = time.monotonic() + 20
            while metric(server.url, "slm_queue_depth") < 1:
                assert time.monotonic() < deadline, "the second request never queued"
                time.sleep(0.01)
            with pytest.raises(openai.RateLimitError) as e:
                client.completions.create(model="long", prompt="hi", max_tokens=2)
            assert e.value.body["code"] == "queue_full"
            running.close()  # the client goes away: its row frees and the waiting request runs
            thread.join(60)
            assert waiting and waiting[0].usage.completion_tokens >= 1
            out = client.completions.create(model="long", prompt="hi", max_tokens=2)
            assert out.usage.completion_tokens >= 1
    finally:
        server.stop()
