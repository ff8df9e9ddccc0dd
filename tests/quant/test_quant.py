"""Quantization formats against their definitions and bounds; kernels against the dequantized reference;
the checkpoint format end to end."""

import json

import pytest
import torch
from torch import nn

from slmkit.errors import CheckpointError
from slmkit.infer import Generator
from slmkit.loading import load_model
from slmkit.model import Decoder, ModelConfig
from slmkit.quant import (
    NF4_CODE, Int4Linear, Int8Linear, NF4Linear, dequantize_int4, dequantize_int8, dequantize_nf4,
    nf4_code_from_quantiles, quantize_int4, quantize_int8, quantize_model, quantize_nf4, save_quantized,
)
from slmkit.quant.formats import NF4_BLOCK, unpack_nibbles


def weight(out=48, inp=256, seed=0):
    return torch.randn(out, inp, generator=torch.Generator().manual_seed(seed)) * 0.05


def test_int8_round_trip_within_half_a_step_per_channel():
    w = weight()
    q, scale = quantize_int8(w)
    assert q.dtype == torch.int8 and scale.shape == (48,)
    assert (q.abs() <= 127).all() and (q.abs().amax(1) == 127).all()  # the row's max uses the full range
    err = (dequantize_int8(q, scale) - w).abs()
    assert (err <= scale[:, None] / 2 + 1e-7).all()


@pytest.mark.parametrize("group", [32, 64, 128])
def test_int4_round_trip_within_half_a_step_per_group(group):
    w = weight() + 0.02  # asymmetric ranges exercise the zero points
    packed, scale, zero = quantize_int4(w, group)
    assert packed.shape == (48, 128) and scale.shape == (48, 256 // group) and zero.max() <= 15
    q = unpack_nibbles(packed)
    assert q.max() <= 15
    err = (dequantize_int4(packed, scale, zero) - w).abs().view(48, -1, group)
    assert (err <= scale[..., None] / 2 + 1e-6).all()
    with pytest.raises(ValueError):
        quantize_int4(w, 48)


def test_nf4_code_book_is_the_papers_normal_float_levels():
    assert NF4_CODE.numel() == 16 and NF4_CODE[7] == 0 and NF4_CODE[0] == -1 and NF4_CODE[15] == 1
    assert (NF4_CODE[1:] > NF4_CODE[:-1]).all()
    assert (NF4_CODE > 0).sum() == 8 and (NF4_CODE < 0).sum() == 7  # asymmetric: exact zero, 8 positive
    torch.testing.assert_close(nf4_code_from_quantiles(), NF4_CODE, atol=1e-6, rtol=0)


def test_nf4_block_layout_and_error_bound():
    w = weight(64, 512)
    t = quantize_nf4(w)
    n_blocks = w.numel() // NF4_BLOCK
    assert t.codes.numel() == w.numel() // 2 and t.absmax_q.shape == (n_blocks,) and t.absmax_q.dtype == torch.int8
    assert t.scale2.numel() == -(-n_blocks // 256)
    # block b covers flat elements [64b, 64b+64): its largest |w| maps to the code +-1
    codes = unpack_nibbles(t.codes).view(n_blocks, NF4_BLOCK)
    blocks = w.reshape(n_blocks, NF4_BLOCK)
    extreme = codes.gather(1, blocks.abs().argmax(1, keepdim=True))
    assert ((extreme == 0) | (extreme == 15)).float().mean() > 0.95
    absmax = blocks.abs().amax(1)
    half_gap = float((NF4_CODE[1:] - NF4_CODE[:-1]).max()) / 2
    err = (dequantize_nf4(t) - w).abs().view(n_blocks, NF4_BLOCK)
    assert (err <= absmax[:, None] * half_gap + t.scale2.max() + 1e-6).all()
    bits = (t.codes.numel() * 8 + t.absmax_q.numel() * 8 + t.scale2.numel() * 32) / w.numel()
    assert bits < 4.2


@pytest.mark.parametrize("cls", [Int8Linear, Int4Linear])
def test_kernels_match_the_dequantized_reference(cls):
    linear = nn.Linear(256, 64, bias=True)
    q = cls.from_linear(linear)
    x = torch.randn(5, 256)
    reference = nn.functional.linear(x.bfloat16().float(), q.dequantize(), linear.bias)
    out = q(x)
    torch.testing.assert_close(out, reference, rtol=2e-2, atol=2e-2)
    assert (out - reference).abs().max() < 0.05 * reference.abs().max()
    # and the quantized layer is close to the float layer (4 bits: steps of 1/15 of a group's range)
    bound = 0.02 if cls is Int8Linear else 0.12
    assert (out - linear(x)).abs().max() < bound * linear(x).abs().max()


@pytest.mark.parametrize("method", ["int8", "int4", "nf4"])
def test_quantized_checkpoint_round_trip_loads_through_load_model(tmp_path, method):
    torch.manual_seed(0)
    model = Decoder(ModelConfig(vocab_size=128, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=128,
                                max_seq_len=64)).eval()
    ids = torch.randint(0, 128, (1, 12))
    with torch.no_grad():
        before = model(ids).logits
    quantize_model(model, method, group_size=32)
    save_quantized(model, tmp_path / "q")
    config = json.loads((tmp_path / "q" / "config.json").read_text())
    assert config["format"] == "slmkit-quantized" and config["format_version"] == 1
    loaded, info = load_model(tmp_path / "q")
    assert info.format == "quantized"
    assert isinstance(loaded.blocks[0].attn.q_proj, {"int8": Int8Linear, "int4": Int4Linear, "nf4": NF4Linear}[method])
    with torch.no_grad():
        after = loaded(ids).logits.float()
    assert (after - before).abs().max() < 0.15 * before.abs().max()
    assert len(Generator(loaded, eos_ids=set()).generate([1, 2, 3], max_new_tokens=5, temperature=0).token_ids) == 5


@pytest.mark.parametrize("method", ["int8", "int4"])
def test_reloaded_quantized_checkpoint_takes_the_one_token_step(tmp_path, method):
    """Float tensors load as float32 on CPU by default, so the one-token fast path runs, with the same
    greedy tokens as the general path; dtype=bfloat16 still overrides (and falls back to the general path)."""
    torch.manual_seed(0)
    model = Decoder(ModelConfig(vocab_size=128, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=128,
                                max_seq_len=64)).eval()
    quantize_model(model, method, group_size=32)
    save_quantized(model, tmp_path / "q")
    loaded, _ = load_model(tmp_path / "q")
    assert loaded.embed.weight.dtype == torch.float32 and loaded.final_norm.weight.dtype == torch.float32
    fast = Generator(loaded, eos_ids=set())
    assert fast.runner.fast is not None
    slow = Generator(loaded, eos_ids=set())
    slow.runner.fast = None
    prompt = [5, 9, 2, 77]
    out = fast.generate(prompt, max_new_tokens=12, temperature=0, ignore_eos=True).token_ids
    assert out == slow.generate(prompt, max_new_tokens=12, temperature=0, ignore_eos=True).token_ids
    half, _ = load_model(tmp_path / "q", dtype=torch.bfloat16)
    assert half.embed.weight.dtype == torch.bfloat16
    assert Generator(half, eos_ids=set()).runner.fast is None


def test_unknown_quantized_format_or_method_is_a_clear_error(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "config.json").write_text(json.dumps({"format": "slmkit-quantized", "format_version": 1,
                                                             "quantization": {"method": "int3"}, "model": {}}))
    with pytest.raises(CheckpointError, match="unknown quantization method 'int3'"):
        load_model(tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "config.json").write_text(json.dumps({"format": "gguf-ish"}))
    with pytest.raises(CheckpointError, match="unknown checkpoint format 'gguf-ish'"):
        load_model(tmp_path / "b")
