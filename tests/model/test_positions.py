"""RoPE frequencies (plain and scaled) against transformers' own functions; sinusoidal table by hand."""

import math

import pytest
import torch
from transformers import LlamaConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from slmkit.model import ModelConfig
from slmkit.model.positions import rope_inverse_frequencies, sinusoidal_embedding

HF_ROPE = {
    "linear": dict(rope_type="linear", factor=4.0),
    "yarn": dict(rope_type="yarn", factor=4.0, original_max_position_embeddings=512, beta_fast=32, beta_slow=1),
    "llama3": dict(rope_type="llama3", factor=8.0, original_max_position_embeddings=512, low_freq_factor=1.0,
                   high_freq_factor=4.0),
}


@pytest.mark.parametrize("kind", list(HF_ROPE))
def test_scaled_rope_matches_transformers(kind):
    params = HF_ROPE[kind]
    hf = LlamaConfig(hidden_size=256, num_attention_heads=4, max_position_embeddings=2048,
                     rope_parameters=dict(params, rope_theta=500000.0))
    expected, expected_scale = ROPE_INIT_FUNCTIONS[kind](hf, "cpu")
    ours = ModelConfig(d_model=256, n_heads=4, max_seq_len=2048, rope_theta=500000.0, rope_scaling=kind,
                       rope_scaling_factor=params["factor"],
                       rope_original_max_seq_len=params.get("original_max_position_embeddings"))
    inv_freq, scale = rope_inverse_frequencies(ours)
    torch.testing.assert_close(inv_freq, expected)
    assert scale == pytest.approx(expected_scale)


def test_ntk_scaling_raises_the_base():
    plain, _ = rope_inverse_frequencies(ModelConfig(d_model=128, n_heads=2))
    ntk, _ = rope_inverse_frequencies(ModelConfig(d_model=128, n_heads=2, rope_scaling="ntk", rope_scaling_factor=4))
    assert ntk[0] == plain[0]  # the fastest rotation is untouched
    base = 10000 * 4 ** (64 / 62)
    assert ntk[-1].item() == pytest.approx(base ** (-62 / 64), rel=1e-5)  # the slowest is stretched


def test_sinusoidal_table_by_hand():
    table = sinusoidal_embedding(torch.tensor([[0, 3]]), 8, torch.float32)
    assert table.shape == (1, 2, 8)
    assert table[0, 1, 2].item() == pytest.approx(math.sin(3 / 10000 ** (2 / 8)), rel=1e-5)
    assert table[0, 1, 3].item() == pytest.approx(math.cos(3 / 10000 ** (2 / 8)), rel=1e-5)
    assert table[0, 0, 1].item() == 1.0


def test_rope_frequencies_stay_float32_when_the_model_is_cast():
    from slmkit.model import Decoder

    model = Decoder(ModelConfig(vocab_size=16, d_model=32, n_heads=2, d_ff=32, n_layers=1)).to(torch.bfloat16)
    assert model.rope.inv_freq.dtype == torch.float32
    torch.testing.assert_close(model.rope.inv_freq, rope_inverse_frequencies(model.config)[0], rtol=0, atol=0)
    assert model(torch.tensor([[1, 2, 3]])).logits.dtype == torch.bfloat16
