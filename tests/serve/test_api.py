"""The OpenAI-compatible API, through the official `openai` client against a real `slm serve` process."""

from __future__ import annotations

import concurrent.futures as cf

import pytest

from slmkit.infer import Generator
from slmkit.tokenizer import load_tokenizer
from tests.serve.conftest import API_KEY, metric

MESSAGES = [{"role": "system", "content": "You tell short stories."},
            {"role": "user", "content": "Tell me about a cat."}]


@pytest.fixture(scope="module")
def reference(tiny_run):
    """The generation engine run in-process: what the server must reproduce token for token."""
    return Generator.from_pretrained(tiny_run)


def test_models_list(client, tiny_run):
    models = client.models.list().data
    assert [m.id for m in models] == [tiny_run.name]
    assert models[0].object == "model" and models[0].owned_by == "slmkit"
    assert client.models.retrieve(tiny_run.name).id == tiny_run.name


def test_completion_matches_the_engine_and_counts_usage(client, tiny_run, reference):
    tok = load_tokenizer(tiny_run)
    prompt = "Once upon a time there was"
    for settings in (dict(temperature=0), dict(temperature=0.9, top_p=0.8, seed=11)):
        out = client.completions.create(model=tiny_run.name, prompt=prompt, max_tokens=12, **settings)
        expected = reference.generate(prompt, max_new_tokens=12, **settings)
        assert out.object == "text_completion"
        assert out.choices[0].text == expected.text, settings
        assert out.choices[0].finish_reason == expected.finish_reason
        assert out.usage.prompt_tokens == len(tok.encode(prompt))
        assert out.usage.completion_tokens == len(expected.token_ids)
        assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens


def test_completion_defaults_to_16_tokens_and_accepts_token_ids(client, tiny_run):
    tok = load_tokenizer(tiny_run)
    ids = tok.encode("The dog ran")
    out = client.completions.create(model=tiny_run.name, prompt=ids, temperature=0)
    assert out.usage.prompt_tokens == len(ids)
    assert out.usage.completion_tokens <= 16
    text = client.completions.create(model=tiny_run.name, prompt="The dog ran", temperature=0)
    assert text.choices[0].text == out.choices[0].text


def test_chat_applies_the_template_and_reports_usage(client, tiny_run, reference):
    from slmkit.tokenizer.chat_template import chat_stop_strings, render_chat

    tok = load_tokenizer(tiny_run)
    out = client.chat.completions.create(model=tiny_run.name, messages=MESSAGES, max_tokens=10, temperature=0)
    prompt = render_chat(tok, MESSAGES)
    expected = reference.generate(prompt, max_new_tokens=10, temperature=0, stop=chat_stop_strings(tok))
    assert out.object == "chat.completion"
    assert out.choices[0].message.role == "assistant"
    assert out.choices[0].message.content == expected.text
    assert out.usage.prompt_tokens == len(tok.encode(prompt))
    assert out.usage.completion_tokens == len(expected.token_ids)


def test_streamed_chat_reassembles_to_the_non_streamed_result(client, tiny_run):
    kwargs = dict(model=tiny_run.name, messages=MESSAGES, max_tokens=40, temperature=1.0, top_p=0.95, seed=1234)
    whole = client.chat.completions.create(**kwargs)
    chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kwargs))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(chunks) > 3  # really streamed, not one blob
    assert text == whole.choices[0].message.content
    assert finish == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.model_dump() == whole.usage.model_dump()
    assert len({c.id for c in chunks}) == 1


def test_streamed_completion(client, tiny_run):
    kwargs = dict(model=tiny_run.name, prompt="Lily said", max_tokens=20, temperature=0.7, seed=5)
    whole = client.completions.create(**kwargs)
    text = "".join(c.choices[0].text for c in client.completions.create(stream=True, **kwargs))
    assert text == whole.choices[0].text


def test_n_choices_are_distinct_and_reproducible(client, tiny_run):
    kwargs = dict(model=tiny_run.name, prompt="The cat", max_tokens=12, temperature=1.0, seed=7, n=3)
    first = client.completions.create(**kwargs)
    second = client.completions.create(**kwargs)
    texts = [c.text for c in first.choices]
    assert [c.index for c in first.choices] == [0, 1, 2]
    assert texts == [c.text for c in second.choices]
    assert len(set(texts)) == 3
    assert 3 <= first.usage.completion_tokens <= 36 and first.usage.prompt_tokens == second.usage.prompt_tokens
    # choice k samples with seed + k, so choice 1 equals a single request seeded 8
    single = client.completions.create(**{**kwargs, "n": 1, "seed": 8})
    assert single.choices[0].text == texts[1]


def test_stop_strings_cut_the_text(client, tiny_run):
    kwargs = dict(model=tiny_run.name, prompt="Once upon a time", max_tokens=30, temperature=0)
    free = client.completions.create(**kwargs).choices[0].text
    stop = free[5:8]
    assert stop and stop in free
    stopped = client.completions.create(stop=[stop, "zzzz"], **kwargs).choices[0]
    assert stopped.text == free[:free.index(stop)]
    assert stopped.finish_reason == "stop"
    streamed = "".join(c.choices[0].text for c in client.completions.create(stream=True, stop=stop, **kwargs))
    assert streamed == stopped.text


def test_concurrent_requests_batch_together_and_keep_their_own_settings(client, tiny_run, server):
    requests = [dict(prompt=f"Story number {i}:", max_tokens=8 + 3 * i,
                     **(dict(temperature=0) if i % 2 else dict(temperature=0.8, top_p=0.9, seed=100 + i)))
                for i in range(8)]

    def ask(r):
        return client.completions.create(model=tiny_run.name, **r).choices[0].text

    sequential = [ask(r) for r in requests]
    steps_before = metric(server.url, "slm_decode_batch_size_count")
    rows_before = metric(server.url, "slm_decode_batch_size_sum")
    with cf.ThreadPoolExecutor(8) as pool:
        concurrent = list(pool.map(ask, requests))
    steps = metric(server.url, "slm_decode_batch_size_count") - steps_before
    rows = metric(server.url, "slm_decode_batch_size_sum") - rows_before
    assert concurrent == sequential
    assert rows / steps > 1.5, "concurrent requests should share decode steps"
    assert metric(server.url, "slm_running_sequences") == 0


def test_metrics_are_prometheus_text(server, client, tiny_run):
    import httpx

    client.completions.create(model=tiny_run.name, prompt="hi", max_tokens=3)
    r = httpx.get(server.url + "/metrics", headers={"Authorization": f"Bearer {API_KEY}"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    for name in ("slm_requests_total", "slm_generated_tokens_total", "slm_prompt_tokens_total",
                 "slm_request_latency_seconds_bucket", "slm_time_to_first_token_seconds_bucket",
                 "slm_queue_depth", "slm_running_sequences"):
        assert name in text
    assert "# TYPE slm_request_latency_seconds histogram" in text
    assert metric(server.url, "slm_requests_total", endpoint="/v1/completions", status="200") >= 1
    assert 'le="+Inf"' in text


def test_health_and_ready_need_no_key(server):
    import httpx

    assert httpx.get(server.url + "/health").json() == {"status": "ok"}
    assert httpx.get(server.url + "/ready").json()["status"] == "ready"
