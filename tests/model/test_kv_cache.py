"""Incremental decoding with the preallocated KV cache gives exactly the full forward's logits,
also for a batch of left-padded prompts of different lengths."""

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
    cache = KVCache.for_model(model, batch_size=2, max_len=16)
    pieces = [model(ids[:, :5], cache=cache).logits]
    for t in range(5, 12):
        pieces.append(model(ids[:, t:t + 1], cache=cache).logits)
    torch.testing.assert_close(torch.cat(pieces, dim=1), full)
    assert cache.length == 12 and cache.next_position.tolist() == [12, 12]


@torch.no_grad()
def test_chunked_prefill_into_a_filled_cache_matches_full_forward():
    model = _model(tiny_config())
    ids = torch.randint(0, 64, (1, 10))
    cache = KVCache.for_model(model, batch_size=1, max_len=10)
    first, second = model(ids[:, :4], cache=cache).logits, model(ids[:, 4:], cache=cache).logits
    torch.testing.assert_close(torch.cat([first, second], dim=1), model(ids).logits)


@torch.no_grad()
def test_batched_left_padded_prompts_decode_like_each_prompt_alone(family_config):
    model = _model(family_config)
    lengths = [3, 7, 5]
    prompts = [torch.randint(0, 64, (n,)) for n in lengths]
    continuation = torch.randint(0, 64, (3, 4))  # forced next tokens, one column per decode step
    width = max(lengths)
    padded = torch.zeros(3, width, dtype=torch.long)
    mask = torch.zeros(3, width, dtype=torch.long)
    for row, p in enumerate(prompts):
        padded[row, width - len(p):] = p
        mask[row, width - len(p):] = 1

    cache = KVCache.for_model(model, batch_size=3, max_len=width + 4)
    prefill = model(padded, attention_mask=mask, cache=cache).logits
    steps = [model(continuation[:, s:s + 1], cache=cache).logits[:, 0] for s in range(4)]

    for row, p in enumerate(prompts):
        alone = model(torch.cat([p, continuation[row]])[None]).logits[0]
        torch.testing.assert_close(prefill[row, width - len(p):], alone[:len(p)])
        torch.testing.assert_close(torch.stack([s[row] for s in steps]), alone[len(p):])
    assert cache.next_position.tolist() == [n + 4 for n in lengths]


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
    cache = KVCache.for_model(model, batch_size=1, max_len=8)
    pointers = [k.data_ptr() for k in cache.keys]
    model(torch.randint(0, 64, (1, 3)), cache=cache)
    for _ in range(3):
        model(torch.randint(0, 64, (1, 1)), cache=cache)
    assert [k.data_ptr() for k in cache.keys] == pointers
    assert cache.keys[0].shape == (1, 2, 8, 8)
    assert cache.keys[0][:, :, :6].abs().sum() > 0 and cache.keys[0][:, :, 6:].abs().sum() == 0


def test_cache_overflow_is_a_clear_error():
    model = _model(tiny_config())
    cache = KVCache.for_model(model, batch_size=1, max_len=4)
    with torch.no_grad():
        model(torch.randint(0, 64, (1, 4)), cache=cache)
        with pytest.raises(SlmError, match="KV cache is full"):
            model(torch.randint(0, 64, (1, 1)), cache=cache)


@torch.no_grad()
def test_last_logits_only_is_the_last_column():
    model = _model(tiny_config())
    ids = torch.randint(0, 64, (2, 6))
    last = model(ids, last_logits_only=True).logits
    assert last.shape == (2, 1, 64)
    torch.testing.assert_close(last, model(ids).logits[:, -1:])
