"""Internal failures (500 without a traceback, then recovery), graceful SIGTERM, and the CLI."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import httpx
import openai
import pytest

from tests.serve.conftest import ServerProcess, free_port


@pytest.fixture()
def thread_server(tiny_run):
    """A server in a thread of this process, so a test can plant a fault in its model runner."""
    from slmkit.serve.server import build_server
    from slmkit.serve.service import ServeConfig, Service

    config = ServeConfig(model=str(tiny_run), port=free_port(), max_batch=4, max_tokens=32)
    service = Service.load(config)
    server = build_server(config, service, log_level="critical")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{config.port}"
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive()
        time.sleep(0.05)
    yield url, service
    server.should_exit = True
    thread.join(30)


def test_internal_failure_is_500_without_a_traceback_and_the_server_recovers(thread_server, tiny_run):
    url, service = thread_server
    runner = service.scheduler.runner

    def broken(*args, **kwargs):
        raise RuntimeError("planted fault: secret internal detail")

    runner.forward = broken
    with openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0) as client:
        with pytest.raises(openai.InternalServerError) as e:
            client.completions.create(model=tiny_run.name, prompt="hi", max_tokens=4)
        assert "planted" not in e.value.response.text and "Traceback" not in e.value.response.text
        assert e.value.body["type"] == "server_error"
        # streamed: the error arrives as an SSE error event, which the client raises
        with pytest.raises(openai.APIError) as e:
            list(client.chat.completions.create(model=tiny_run.name, messages=[{"role": "user", "content": "x"}],
                                                max_tokens=4, stream=True))
        assert "planted" not in str(e.value)
        del runner.forward  # the fault goes away; the same server serves again
        out = client.completions.create(model=tiny_run.name, prompt="hi", max_tokens=4)
        assert out.usage.completion_tokens >= 1
    assert httpx.get(url + "/ready").status_code == 200


def test_sigterm_finishes_in_flight_requests_then_exits(tiny_run, tmp_path):
    server = ServerProcess(tiny_run, tmp_path / "sigterm.log", "--max-tokens", "200", "--shutdown-timeout", "20")
    body = {"prompt": "Once upon a time", "max_tokens": 200, "stream": True, "temperature": 1.0,
            "ignore_eos": True}
    with httpx.stream("POST", server.url + "/v1/completions", json=body, timeout=60) as r:
        lines = r.iter_lines()
        first = next(line for line in lines if line.startswith("data:"))
        assert first
        server.proc.send_signal(signal.SIGTERM)
        rest = list(lines)  # the stream runs to its end despite the signal
    assert rest[-1] == "data: [DONE]" or [x for x in rest if x][-1] == "data: [DONE]"
    assert any('"finish_reason":"length"' in x for x in rest), rest[-6:]
    assert server.proc.wait(30) == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "/health", timeout=2)
    server.stop()
    assert "Shutting down" in server.log_path.read_text()


def test_cli_help_and_bad_directory():
    out = subprocess.run([sys.executable, "-m", "slmkit", "serve", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for flag in ("--host", "--port", "--api-key", "--max-batch", "--max-tokens", "--max-queue", "examples:"):
        assert flag in out.stdout
    assert "127.0.0.1" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "slmkit", "serve", "/nonexistent/run", "--port", str(free_port())],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr


def test_serves_a_quantized_checkpoint(tiny_run, tmp_path):
    """An int8 checkpoint written by slmkit.quant loads through the same path and serves, matching the
    engine run in-process on the same checkpoint."""
    from slmkit.infer import Generator
    from slmkit.loading import load_model
    from slmkit.quant import quantize_model, save_quantized

    model, _ = load_model(tiny_run)
    quantize_model(model, "int8")
    run = save_quantized(model, tmp_path / "tiny-int8", tokenizer_dir=tiny_run)
    server = ServerProcess(run, tmp_path / "int8.log")
    try:
        with openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0) as client:
            assert client.models.list().data[0].id == "tiny-int8"
            out = client.completions.create(model="tiny-int8", prompt="Once upon a time", max_tokens=8, temperature=0)
        expected = Generator.from_pretrained(run).generate("Once upon a time", max_new_tokens=8, temperature=0)
        assert out.choices[0].text == expected.text
    finally:
        server.stop()
