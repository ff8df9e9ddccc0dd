"""Decoding with the per-row KV cache through `Decoder.forward` gives exactly the full forward's logits,
for every family: prefill, one token at a time, several tokens at once, rows of different lengths
decoded together, and rolled-back rows (speculative decoding)."""

import pytest
import torch

from slmkit.errors import SlmError
from slmkit.model import Decoder, KVCache

from .tiny import tiny_config


def _model(config):
    torch.manual_seed(0)
    return Decoder(config).eval()


@torch.no_grad()
def test_prefill_then_one_token_steps_match_full_forward(family_config):
    model = _model(family_config)
    ids = torch.randint(0, 64, (2, 12))
    full = model(ids).logits
    cache = KVCache.for_model(model, rows=2, max_len=16)
    pieces = [model(ids[:, :5], cache=cache).logits]
    for t in range(5, 12):
        pieces.append(model(ids[:, t:t + 1], cache=cache).logits)
    torch.testing.assert_close(torch.cat(pieces, dim=1), full)
    assert cache.lengths == [12, 12]


@torch.no_grad()
def test_chunked_prefill_into_a_filled_cache_matches_full_forward(family_config):
    model = _model(family_config)
    ids = torch.randint(0, 64, (1, 10))
    cache = KVCache.for_model(model, rows=1, max_len=10)
    first, second = model(ids[:, :4], cache=cache).logits, model(ids[:, 4:], cache=cache).logits
    torch.testing.assert_close(torch.cat([first, second], dim=1), model(ids).logits)


@torch.no_grad()
def test_rows_of_different_lengths_decode_together_like_each_alone(family_config):
    """Prompts of lengths 3, 7, 5 prefilled into rows 1..3 one at a time, then 4 steps of one token per
    row and one step of 3 tokens per row, all rows in each call: each row equals its own full forward."""
    model = _model(family_config)
    lengths = [3, 7, 5]
    prompts = [torch.randint(0, 64, (1, n)) for n in lengths]
    continuation = torch.randint(0, 64, (3, 7))
    cache = KVCache.for_model(model, rows=4, max_len=16)
    prefill = [model(p, cache=cache, cache_row=1 + i).logits[0] for i, p in enumerate(prompts)]
    steps = [model(continuation[:, s:s + 1], cache=cache, cache_row=1).logits for s in range(4)]
    block = model(continuation[:, 4:], cache=cache, cache_row=1).logits  # 3 tokens per row at once
    got = torch.cat(steps + [block], dim=1)  # [3, 7, vocab]
    for row, p in enumerate(prompts):
        alone = model(torch.cat([p[0], continuation[row]])[None]).logits[0]
        torch.testing.assert_close(prefill[row], alone[:lengths[row]])
        torch.testing.assert_close(got[row], alone[lengths[row]:])
    assert cache.lengths == [0] + [n + 7 for n in lengths]


@torch.no_grad()
def test_rolled_back_row_continues_like_a_fresh_one():
    model = _model(tiny_config())
    ids = torch.randint(0, 64, (1, 9))
    cache = KVCache.for_model(model, rows=1, max_len=12)
    model(ids, cache=cache)
    cache.set_length(0, 4)  # speculative decoding drops rejected tokens by lowering the length
    verify = model(ids[:, 4:8], cache=cache).logits  # several tokens at once into a non-empty row
    torch.testing.assert_close(verify, model(ids[:, :8]).logits[:, 4:])


@torch.no_grad()
def test_padded_batch_without_cache_scores_each_row_like_alone():
    model = _model(tiny_config())
    a, b = torch.randint(0, 64, (6,)), torch.randint(0, 64, (3,))
    ids = torch.stack([a, torch.cat([torch.zeros(3, dtype=torch.long), b])])
    mask = torch.tensor([[1] * 6, [0, 0, 0, 1, 1, 1]])
    logits = model(ids, attention_mask=mask).logits
    torch.testing.assert_close(logits[0], model(a[None]).logits[0])
    torch.testing.assert_close(logits[1, 3:], model(b[None]).logits[0])
    assert torch.isfinite(logits).all()  # padding rows never see an empty (NaN) attention row


@torch.no_grad()
def test_cache_is_preallocated_and_written_in_place():
    model = _model(tiny_config())
    cache = KVCache.for_model(model, rows=2, max_len=8)
    pointer = cache.kv.data_ptr()
    model(torch.randint(0, 64, (1, 3)), cache=cache, cache_row=1)
    for _ in range(3):
        model(torch.randint(0, 64, (1, 1)), cache=cache, cache_row=1)
    assert cache.kv.data_ptr() == pointer
    assert cache.keys(0).shape == (2, 2, 8, 8)
    assert cache.keys(0)[1, :, :6].abs().sum() > 0 and cache.keys(0)[1, :, 6:].abs().sum() == 0
    assert cache.keys(0)[0].abs().sum() == 0  # row 0 untouched


def test_cache_overflow_and_wrong_rows_are_clear_errors():
    model = _model(tiny_config())
    cache = KVCache.for_model(model, rows=1, max_len=4)
    with torch.no_grad():
        model(torch.randint(0, 64, (1, 4)), cache=cache)
        with pytest.raises(SlmError, match="KV cache is full"):
            model(torch.randint(0, 64, (1, 1)), cache=cache)
        with pytest.raises(SlmError, match="outside this KV cache"):
            model(torch.randint(0, 64, (2, 1)), cache=cache)
        with pytest.raises(SlmError, match="attention_mask cannot be combined"):
            model(torch.ones(1, 1, dtype=torch.long), cache=cache, attention_mask=torch.ones(1, 1))
    assert cache.lengths == [4]  # a refused call changes nothing


@torch.no_grad()
def test_last_logits_only_is_the_last_column():
    model = _model(tiny_config())
    ids = torch.randint(0, 64, (2, 6))
    last = model(ids, last_logits_only=True).logits
    assert last.shape == (2, 1, 64)
    torch.testing.assert_close(last, model(ids).logits[:, -1:])


@torch.no_grad()
def test_hidden_only_gives_the_states_the_head_reads():
    model = _model(tiny_config())
    ids = torch.randint(0, 64, (2, 6))
    out = model(ids, hidden_only=True)
    assert out.logits is None and out.hidden.shape == (2, 6, model.config.d_model)
    torch.testing.assert_close(model.head(out.hidden[:, [1, 4]]), model(ids).logits[:, [1, 4]])
