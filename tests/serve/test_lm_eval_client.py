"""lm-eval itself against `slm serve`: its local-completions model (token-id batches, echo + logprobs, the
remote tokenizer routes, no Hugging Face tokenizer files) gets the model's own log-likelihoods, and its
local-chat-completions model gets the server's chat answers. lm-eval is a test-only reference."""

from __future__ import annotations

import httpx
import pytest
import torch
from lm_eval.api.instance import Instance
from lm_eval.models.api_models import JsonChatStr
from lm_eval.models.openai_completions import LocalChatCompletion, LocalCompletionsAPI
from lm_eval.utils import env as lm_eval_jinja

from slmkit.infer import Generator
from slmkit.loading import load_for_inference
from slmkit.tokenizer.chat_template import render_chat
from tests.serve.conftest import API_KEY

AUTH = {"Authorization": f"Bearer {API_KEY}"}
PAIRS = [("Once upon a time there was", " a little cat"), ("The dog ran to the", " park"),
         ("Lily said hello to her friend", " Tom. They played"), ("Café, naïve, ", "世界 and 🙂")]


@pytest.fixture(scope="module")
def reference(tiny_run):
    model, tokenizer, eos_ids = load_for_inference(tiny_run)
    return model, tokenizer, Generator(model, tokenizer, eos_ids)


@pytest.fixture()
def lm(server, tiny_run, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)  # lm-eval's completion requests send this bearer token
    return LocalCompletionsAPI(base_url=server.url + "/v1/completions", model=tiny_run.name,
                               tokenizer_backend="auto", auth_token=API_KEY, tokenized_requests=True,
                               max_length=256, batch_size=2, max_retries=1)


def continuation_logprob(model, tok, context: str, continuation: str) -> tuple[float, bool]:
    """sum log p(continuation | context) and greedy-ness, from the model's log-softmax (lm-eval's split:
    the context's trailing spaces move to the continuation, then context + continuation is encoded whole)."""
    spaces = len(context) - len(context.rstrip())
    context, continuation = context[:len(context) - spaces], context[len(context) - spaces:] + continuation
    whole = tok.encode(context + continuation)
    n_context = len(tok.encode(context))
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([whole])).logits[0].float(), -1)
    targets = whole[n_context:]
    rows = logp[n_context - 1:len(whole) - 1]
    score = rows.gather(-1, torch.tensor(targets)[:, None]).sum().item()
    return score, bool((rows.argmax(-1) == torch.tensor(targets)).all())


def test_remote_tokenizer_is_detected_and_matches_the_servers(lm, reference):
    _, tok, _ = reference
    assert lm.tokenizer_backend == "remote"  # "auto" found /tokenizer_info and /tokenize
    assert lm.tok_encode("Once upon a time") == tok.encode("Once upon a time")
    assert lm.eot_token_id == tok.eos_id and lm.eos_string == tok.eos_token
    assert lm.prefix_token_id == tok.eos_id  # no BOS: lm-eval conditions empty contexts on EOS
    assert lm.decode_batch([tok.encode("Café 世界")]) == ["Café 世界"]


def test_loglikelihood_equals_the_models_log_softmax(lm, reference):
    model, tok, _ = reference
    requests = [Instance("loglikelihood", {}, pair, k) for k, pair in enumerate(PAIRS)]
    requests.append(Instance("loglikelihood", {}, ("The cat", " liked to play"), len(PAIRS)))
    results = lm.loglikelihood(requests)
    assert len(results) == len(requests)
    for request, (score, is_greedy) in zip(requests, results):
        expected, expected_greedy = continuation_logprob(model, tok, *request.args)
        assert score == pytest.approx(expected, abs=1e-4), request.args
        assert is_greedy == expected_greedy


def test_the_models_own_greedy_continuation_is_greedy(lm, reference):
    model, tok, gen = reference
    requests = []
    for context in ("Once upon a time", "The dog ran", "Lily said", "The cat", "They played together"):
        greedy = gen.generate(context, max_new_tokens=1, temperature=0, ignore_eos=True).token_ids
        continuation = tok.decode(greedy)
        if tok.encode(context + continuation) == tok.encode(context) + greedy:  # lm-eval's split keeps the ids
            requests.append(Instance("loglikelihood", {}, (context, continuation), len(requests)))
    assert requests, "no context kept its greedy token under re-tokenization"
    assert all(is_greedy for _, is_greedy in lm.loglikelihood(requests))


def test_loglikelihood_rolling_scores_the_whole_text_after_eos(lm, reference):
    model, tok, _ = reference
    text = "The dog ran to the park and found a red ball under a big tree."
    (score,) = lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (text,), 0)])
    ids = [tok.eos_id] + tok.encode(text)  # lm-eval's prefix token, then the document in one window
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
    expected = logp[:-1].gather(-1, torch.tensor(ids[1:])[:, None]).sum().item()
    assert score == pytest.approx(expected, abs=1e-4)


def test_generate_until_with_many_stops(lm, reference):
    _, tok, gen = reference
    context = "Once upon a time"
    free = gen.generate(context, max_new_tokens=20, temperature=0).text
    until = ["zzzz", "qqqq", "xxxx", "wwww", free[8:11]]  # five `until` + EOS: six stop strings
    requests = [Instance("generate_until", {}, (context, {"until": until, "max_gen_toks": 20}), 0),
                Instance("generate_until", {}, ("The dog ran", {"until": ["\n\n"], "max_gen_toks": 8}), 1)]
    texts = lm.generate_until(requests)
    assert texts[0] == free[:free.index(free[8:11])]
    assert texts[1] == gen.generate("The dog ran", max_new_tokens=8, temperature=0, stop=["\n\n"]).text


def test_local_chat_completions_generate_until(server, tiny_run, reference, monkeypatch):
    _, tok, gen = reference
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    chat = LocalChatCompletion(base_url=server.url + "/v1/chat/completions", model=tiny_run.name, max_retries=1)
    messages = [{"role": "user", "content": "Tell me about a cat."}]
    context = chat.apply_chat_template(messages)
    assert isinstance(context, JsonChatStr)
    until = ["zzzz", "qqqq", "xxxx", "wwww", "vvvv"]  # lm-eval keeps the first four for chat
    (text,) = chat.generate_until([Instance("generate_until", {}, (context, {"until": until, "max_gen_toks": 12}), 0)])
    expected = gen.generate(render_chat(tok, messages), max_new_tokens=12, temperature=0, stop=until[:4] + ["\nUser:"])
    assert text == expected.text


def test_tokenizer_routes_round_trip_and_need_the_key(server, tiny_run, reference):
    _, tok, _ = reference
    text = "Café, naïve, 世界 <|endoftext|> and 🙂"
    for prefix in ("", "/v1"):
        r = httpx.post(server.url + prefix + "/tokenize", headers=AUTH, json={"prompt": text, "add_special_tokens": False})
        assert r.status_code == 200, r.text
        ids = r.json()["tokens"]
        assert ids == tok.encode(text) and tok.eos_id in ids and r.json()["count"] == len(ids)
        back = httpx.post(server.url + prefix + "/detokenize", headers=AUTH, json={"tokens": ids})
        assert back.json() == {"prompt": text}
        info = httpx.get(server.url + prefix + "/tokenizer_info", headers=AUTH).json()
        assert info["eos_token"] == "<|endoftext|>" and info["eos_token_id"] == tok.eos_id
        assert {"bos_token", "pad_token", "chat_template"} <= set(info)
        assert info["model_max_length"] == 256
    for method, path in (("GET", "/tokenizer_info"), ("POST", "/tokenize"), ("POST", "/detokenize")):
        assert httpx.request(method, server.url + path, json={}).status_code == 401
    assert httpx.post(server.url + "/detokenize", headers=AUTH, json={"tokens": [5, 4000]}).status_code == 400
    assert httpx.post(server.url + "/tokenize", headers=AUTH, json={"prompt": "x", "model": "nope"}).status_code == 404
    assert httpx.post(server.url + "/tokenize", headers=AUTH, json={}).status_code == 400


def test_tokenize_messages_matches_the_chat_prompt_and_template(server, tiny_run, client, reference):
    _, tok, _ = reference
    messages = [{"role": "system", "content": "You tell short stories."}, {"role": "user", "content": "A cat?"}]
    r = httpx.post(server.url + "/tokenize", headers=AUTH, json={"messages": messages})
    chat = client.chat.completions.create(model=tiny_run.name, messages=messages, max_tokens=1)
    assert r.json()["count"] == chat.usage.prompt_tokens
    # vLLM's add_generation_prompt: false leaves the assistant's header off, in both routes
    r = httpx.post(server.url + "/tokenize", headers=AUTH, json={"messages": messages, "add_generation_prompt": False})
    chat = client.chat.completions.create(model=tiny_run.name, messages=messages, max_tokens=1,
                                          extra_body={"add_generation_prompt": False})
    assert r.json()["tokens"] == tok.encode(render_chat(tok, messages, False))
    assert r.json()["count"] == chat.usage.prompt_tokens
    # no template in the tiny tokenizer: /tokenizer_info offers the transcript the server renders, as Jinja
    template = httpx.get(server.url + "/tokenizer_info", headers=AUTH).json()["chat_template"]
    for generation_prompt in (True, False):
        rendered = lm_eval_jinja.from_string(template).render(messages=messages,
                                                              add_generation_prompt=generation_prompt)
        assert rendered == render_chat(tok, messages, generation_prompt)
