"""Log-probs from `slm serve`: echo + logprobs over token-id batches (what lm-eval's local-completions sends),
generated-token log-probs in the legacy and the chat shapes, checked against the model's own log-softmax."""

from __future__ import annotations

import json

import httpx
import pytest
import torch

from slmkit.infer import BatchGenerator, Generator, SamplingParams
from slmkit.loading import load_for_inference
from slmkit.tokenizer.chat_template import render_chat
from tests.serve.conftest import API_KEY

AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_run):
    model, tokenizer, _ = load_for_inference(tiny_run)
    return model, tokenizer


def piece_ids(tok) -> dict[str, int]:
    """Token text (as the legacy logprobs object shows it) -> id."""
    return {tok.token_pieces([i])[0]: i for i in range(tok.vocab_size)}


def log_softmax(model, ids: list[int]) -> torch.Tensor:
    """The model's float32 log-softmax at every position of `ids`: [len(ids), vocab]."""
    with torch.no_grad():
        return torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)


def complete(server, **body) -> httpx.Response:
    return httpx.post(server.url + "/v1/completions", headers=AUTH, json=body, timeout=60)


def test_echo_scores_every_prompt_token_with_the_models_log_softmax(server, tiny_run, model_and_tokenizer):
    model, tok = model_and_tokenizer
    prompts = [tok.encode("Once upon a time there was a little cat"), tok.encode("The dog ran"), [7, 300, 12]]
    r = complete(server, model=tiny_run.name, prompt=prompts, max_tokens=1, logprobs=3, echo=True, temperature=0)
    assert r.status_code == 200, r.text
    choices = r.json()["choices"]
    assert [c["index"] for c in choices] == [0, 1, 2]
    for prompt, choice in zip(prompts, choices):
        lp = choice["logprobs"]
        assert len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == len(lp["tokens"]) == len(prompt) + 1
        assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
        expected = log_softmax(model, prompt)  # the last row: the generated token's distribution
        for t in range(1, len(prompt)):
            assert lp["token_logprobs"][t] == pytest.approx(expected[t - 1, prompt[t]].item(), abs=1e-4)
            top = lp["top_logprobs"][t]
            assert tok.token_pieces([prompt[t]])[0] in top  # the token itself, even when not among the top 3
            best = expected[t - 1].topk(3)
            for token_id, value in zip(best.indices.tolist(), best.values.tolist()):
                assert top[tok.token_pieces([token_id])[0]] == pytest.approx(value, abs=1e-4)
        # greedy: the generated token is the most likely one at the last position
        assert lp["token_logprobs"][-1] == pytest.approx(expected[len(prompt) - 1].max().item(), abs=1e-4)
        assert lp["tokens"][:len(prompt)] == tok.token_pieces(prompt)
        assert choice["text"].startswith(tok.decode(prompt))
        assert lp["text_offset"][:len(prompt)] == [len(tok.decode(prompt[:t])) for t in range(len(prompt))]
    assert r.json()["usage"]["prompt_tokens"] == sum(len(p) for p in prompts)


def test_echo_with_max_tokens_0_scores_the_prompt_only(server, tiny_run, model_and_tokenizer):
    model, tok = model_and_tokenizer
    ids = tok.encode("Lily said hello to her friend Tom.")
    r = complete(server, model=tiny_run.name, prompt=tok.decode(ids), max_tokens=0, logprobs=0, echo=True)
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    assert choice["text"] == tok.decode(ids) and choice["finish_reason"] == "length"
    assert r.json()["usage"]["completion_tokens"] == 0
    expected = log_softmax(model, ids)
    token_logprobs = choice["logprobs"]["token_logprobs"]
    assert len(token_logprobs) == len(ids)
    assert token_logprobs[1:] == pytest.approx([expected[t - 1, ids[t]].item() for t in range(1, len(ids))], abs=1e-4)
    assert all(len(top) == 1 for top in choice["logprobs"]["top_logprobs"][1:])  # logprobs 0: the token alone
    plain = complete(server, model=tiny_run.name, prompt=ids, max_tokens=0, echo=True)  # echo, no logprobs
    assert plain.status_code == 200 and plain.json()["choices"][0]["text"] == tok.decode(ids)
    assert plain.json()["choices"][0]["logprobs"] is None


def test_generated_tokens_get_the_raw_distribution_before_sampling_adjustments(server, tiny_run,
                                                                             model_and_tokenizer):
    model, tok = model_and_tokenizer
    prompt = tok.encode("Once upon a time")
    r = complete(server, model=tiny_run.name, prompt=prompt, max_tokens=6, logprobs=2, temperature=0.8, seed=3,
                 repetition_penalty=1.5, top_k=20, ignore_eos=True)
    assert r.status_code == 200, r.text
    lp = r.json()["choices"][0]["logprobs"]
    assert len(lp["token_logprobs"]) == 6 == r.json()["usage"]["completion_tokens"]  # no echo: generated only
    generated = [piece_ids(tok)[t] for t in lp["tokens"]]
    expected = log_softmax(model, prompt + generated)
    for k, token in enumerate(generated):
        position = len(prompt) - 1 + k
        assert lp["token_logprobs"][k] == pytest.approx(expected[position, token].item(), abs=1e-4)
        assert max(lp["top_logprobs"][k].values()) == pytest.approx(expected[position].max().item(), abs=1e-4)
    assert lp["text_offset"][0] == 0 and lp["text_offset"] == sorted(lp["text_offset"])


def test_engine_reports_log_probs_for_a_final_eos_and_for_scoring_only(model_and_tokenizer):
    model, tok = model_and_tokenizer
    prompt = tok.encode("The dog ran to the park")
    expected = log_softmax(model, prompt)
    greedy = int(expected[-1].argmax())
    engine = BatchGenerator(model, tok, max_batch=2, eos_ids={greedy})  # the greedy token ends the text
    engine.add(prompt, SamplingParams(max_new_tokens=4, temperature=0, logprobs=1, prompt_logprobs=2), "a")
    engine.add(prompt, SamplingParams(max_new_tokens=0, prompt_logprobs=0), "b")
    events = {}
    while engine.has_work():
        for event in engine.step():
            events.setdefault(event.request_id, []).append(event)
    (a,), (b,) = events["a"], events["b"]
    assert a.finish_reason == "stop" and a.token_id is None  # EOS adds no token ...
    assert a.logprob.token_id == greedy and a.logprob.logprob == pytest.approx(expected[-1, greedy].item(), abs=1e-4)
    assert [e.token_id for e in a.prompt_logprobs] == prompt[1:]  # ... but its log-prob is reported
    assert all(len(e.top) == 2 for e in a.prompt_logprobs)
    assert b.finish_reason == "length" and b.token_id is None and b.logprob is None
    assert [e.logprob for e in b.prompt_logprobs] == pytest.approx([e.logprob for e in a.prompt_logprobs], abs=1e-5)


def test_chat_logprobs_use_the_content_schema(client, tiny_run, model_and_tokenizer):
    model, tok = model_and_tokenizer
    messages = [{"role": "user", "content": "Tell me about a cat."}]
    out = client.chat.completions.create(model=tiny_run.name, messages=messages, max_tokens=5, temperature=0,
                                         logprobs=True, top_logprobs=2)
    content = out.choices[0].logprobs.content
    prompt = tok.encode(render_chat(tok, messages))
    by_bytes = {tok.id_to_bytes(i): i for i in range(tok.vocab_size)}
    generated = [by_bytes[bytes(c.bytes)] for c in content]
    assert b"".join(bytes(c.bytes) for c in content).decode("utf-8", "replace") == out.choices[0].message.content
    expected = log_softmax(model, prompt + generated)
    for k, item in enumerate(content):
        position = len(prompt) - 1 + k
        assert item.logprob == pytest.approx(expected[position].max().item(), abs=1e-4)  # greedy
        assert len(item.top_logprobs) == 2 and item.top_logprobs[0].logprob == pytest.approx(item.logprob, abs=1e-6)
    plain = client.chat.completions.create(model=tiny_run.name, messages=messages, max_tokens=2)
    assert plain.choices[0].logprobs is None


@pytest.mark.parametrize("body, param", [
    (dict(prompt="hi", logprobs=21), "logprobs"),
    (dict(prompt="hi", logprobs=True), "logprobs"),
    (dict(prompt="hi", logprobs=1, stream=True), "logprobs"),
    (dict(prompt="hi", top_logprobs=2), "top_logprobs"),
    (dict(prompt=[[5, 6], [7, 400]]), "prompt"),  # the tiny vocabulary is 400
    (dict(prompt=[[5, 6], []]), "prompt"),
    (dict(prompt=[[5, 6], "text"]), "prompt"),
    (dict(prompt=[[5] * 10, [6] * 250], max_tokens=8, echo=True), "max_tokens"),  # 258 > the 256 context
    (dict(prompt="hi", max_tokens=0), "max_tokens"),  # 0 only with echo
    (dict(prompt="hi", stop=[f"s{i}" for i in range(65)]), "stop"),
    (dict(prompt="hi", stop_token_ids=[400]), "stop_token_ids"),
])
def test_bad_logprob_and_batch_requests_are_400(server, tiny_run, body, param):
    r = complete(server, model=tiny_run.name, **body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param, error
    assert "\n" not in error["message"]


def test_over_long_batch_names_the_prompt_and_the_window(server, tiny_run):
    r = complete(server, model=tiny_run.name, prompt=[[5] * 10, [6] * 250], max_tokens=8)
    message = r.json()["error"]["message"]
    assert "prompt 1" in message and "256" in message and r.json()["error"]["code"] == "context_length_exceeded"
    r = complete(server, model=tiny_run.name, prompt=[[5] * 10, [6] * 256], max_tokens=1)
    assert r.status_code == 400 and "prompt 1" in r.json()["error"]["message"]


def test_completions_take_many_stop_strings_and_chat_keeps_four(server, tiny_run):
    free = complete(server, model=tiny_run.name, prompt="Once upon a time", max_tokens=30, temperature=0)
    text = free.json()["choices"][0]["text"]
    stops = ["zzzz", "qqqq", "xxxx", "wwww", "<|endoftext|>", text[6:9]]  # lm-eval: until + EOS, uncapped
    r = complete(server, model=tiny_run.name, prompt="Once upon a time", max_tokens=30, temperature=0, stop=stops)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["text"] == text[:text.index(text[6:9])]
    chat = httpx.post(server.url + "/v1/chat/completions", headers=AUTH, timeout=30,
                      json={"messages": [{"role": "user", "content": "hi"}], "stop": stops[:5]})
    assert chat.status_code == 400 and chat.json()["error"]["param"] == "stop"
    assert "at most 4" in chat.json()["error"]["message"]


def test_streamed_echo_and_stop_token_ids(server, tiny_run, model_and_tokenizer):
    model, tok = model_and_tokenizer
    body = dict(model=tiny_run.name, prompt="The cat", max_tokens=8, temperature=0, echo=True)
    whole = complete(server, **body).json()["choices"][0]["text"]
    with httpx.stream("POST", server.url + "/v1/completions", headers=AUTH, json={**body, "stream": True}) as r:
        chunks = [line[6:] for line in r.iter_lines() if line.startswith("data: ") and line != "data: [DONE]"]
    assert "".join(json.loads(c)["choices"][0]["text"] for c in chunks) == whole
    greedy = Generator(model, tok, set()).generate("The cat", max_new_tokens=8, temperature=0, ignore_eos=True)
    stop_id = greedy.token_ids[3]
    cut = greedy.token_ids.index(stop_id)
    r = complete(server, model=tiny_run.name, prompt="The cat", max_tokens=8, temperature=0, stop_token_ids=[stop_id],
                 ignore_eos=True)
    assert r.json()["choices"][0]["text"] == tok.decode(greedy.token_ids[:cut])
    assert r.json()["choices"][0]["finish_reason"] == "stop"
