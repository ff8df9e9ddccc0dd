"""JSON mode: the byte automaton accepts exactly JSON objects (checked against `json.loads`), the token mask
over a real vocabulary only ever yields parseable objects, and the server honours response_format."""

from __future__ import annotations

import json
import random

import httpx
import openai
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from slmkit.infer import Sampler, SamplingParams
from slmkit.serve.json_mode import DONE_MODE, START, JsonObjectMask, advance, advance_bytes
from slmkit.tokenizer import load_tokenizer
from tests.serve.conftest import API_KEY

GOOD = ['{}', '{"a": 1}', '{"a": [1, 2.5e-3, -0, true, false, null, {"b": "c\\u00e9\\n\\"\\\\"}]}',
        ' {\n  "x" : "café 🙂 世界"\n}', '{"a":{"b":{"c":[[], {}]}}}', '{"n": 10, "m": -1.0E+5, "k": 0.5e1}']
BAD = ['[]', '"s"', '1', '{"a" 1}', '{"a": 01}', '{"a": 1,}', '{"a": [1,]}', '{a: 1}', '{"a": tru}', '{"a": "\x01"}',
       '{"a": 1}}', '{"a": .5}', '{"a": "\\x"}', '{"a": 1.}', '{"a": -}', '{"a": 1e}', "{'a': 1}", '{"a": NaN}',
       '{"a": "\\u12"}', '{"a" : [1 2]}', '{,}']

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=12)


def is_done(state) -> bool:
    return state is not None and state[0] == DONE_MODE


@pytest.mark.parametrize("text", GOOD)
def test_json_objects_are_accepted_and_every_prefix_is_alive(text):
    data = text.strip().encode()
    state = START
    for byte in data:
        state = advance(state, byte)
        assert state is not None, data
    assert is_done(state)


@pytest.mark.parametrize("text", BAD)
def test_anything_else_never_completes(text):
    assert not is_done(advance_bytes(START, text.encode()))


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.text(), json_values, max_size=5), st.sampled_from([None, 2]), st.booleans())
def test_any_serialised_object_is_accepted(obj, indent, ensure_ascii):
    assert is_done(advance_bytes(START, json.dumps(obj, indent=indent, ensure_ascii=ensure_ascii).encode()))


def test_random_walks_through_the_automaton_end_in_parseable_objects():
    rng = random.Random(0)
    closing = set(b'"}],0123456789')
    for _ in range(300):
        state, out = START, bytearray()
        while not is_done(state) and len(out) < 4000:
            choices = [b for b in range(256) if advance(state, b) is not None]
            assert choices, (bytes(out), state)  # never stuck
            weights = [30 if b in closing else 1 for b in choices]
            byte = rng.choices(choices, weights)[0]
            out.append(byte)
            state = advance(state, byte)
        assert is_done(state), bytes(out)
        assert isinstance(json.loads(out.decode("utf-8")), dict), bytes(out)


def test_the_token_mask_over_a_real_vocabulary_only_yields_objects(tiny_run):
    tok = load_tokenizer(tiny_run)
    mask = JsonObjectMask(tok, {tok.eos_id})
    closing = torch.tensor([any(c in (tok.vocab.get(i) or b"") for c in b'"}]') for i in range(tok.vocab_size)])
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        sampler = Sampler(SamplingParams(temperature=1.0, seed=seed, logits_processors=[mask]))
        generated = []
        while len(generated) < 400:
            logits = torch.randn(tok.vocab_size, generator=g) + 4.0 * closing
            token = sampler.sample(logits, [], generated)
            if token == tok.eos_id:
                break
            generated.append(token)
        assert generated and token == tok.eos_id, tok.decode(generated)
        assert isinstance(json.loads(tok.decode(generated)), dict)


def test_the_server_honours_json_mode(client, tiny_run, server):
    finished = 0
    for seed in range(6):
        out = client.chat.completions.create(model=tiny_run.name, messages=[{"role": "user", "content": "JSON"}],
                                             max_tokens=100, seed=seed, response_format={"type": "json_object"})
        text = out.choices[0].message.content
        assert advance_bytes(START, text.encode()) is not None, text  # a JSON object's prefix, at least
        if out.choices[0].finish_reason == "stop":
            assert isinstance(json.loads(text), dict)
            finished += 1
    assert finished >= 2
    completion = client.completions.create(model=tiny_run.name, prompt="{", max_tokens=20, temperature=0,
                                           extra_body={"response_format": {"type": "json_object"}})
    assert advance_bytes(START, completion.choices[0].text.encode()) is not None
    for body, param in ((dict(response_format={"type": "json_schema", "json_schema": {}}), "response_format"),
                        (dict(response_format={"type": "json_object"}, ignore_eos=True), "ignore_eos")):
        r = httpx.post(server.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {API_KEY}"},
                       json={"messages": [{"role": "user", "content": "hi"}], **body}, timeout=30)
        assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=tiny_run.name, messages=[{"role": "user", "content": "x"}],
                                       extra_body={"logit_bias": {"5": 10}})
