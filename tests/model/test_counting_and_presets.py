"""Parameter counts, FLOPs and memory: the closed forms against real modules (built on the meta
device, so even qwen3-0.6b costs no memory) and against the published figures."""

import pytest
import torch

from slmkit.errors import ConfigError
from slmkit.model import (Decoder, count_parameters, flops_per_token, kv_cache_bytes_per_token, preset,
                          preset_names, training_memory_estimate)

from .tiny import FAMILY_CONFIGS, tiny_config


def _meta_numel(config) -> tuple[int, int]:
    with torch.device("meta"):
        model = Decoder(config)
    total = sum(p.numel() for p in model.parameters())  # a tied head is one Parameter, counted once
    embedding = model.embed.weight.numel() + (model.pos_embed.weight.numel() if model.pos_embed is not None else 0)
    head = 0 if config.tie_embeddings else model.head.weight.numel()
    return total, embedding + head


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_count_matches_its_modules(name):
    config = preset(name)
    counts = count_parameters(config)
    total, embedding_and_head = _meta_numel(config)
    assert counts["total"] == total
    assert counts["embedding"] + counts["head"] == embedding_and_head
    assert counts["non_embedding"] == total - embedding_and_head


@pytest.mark.parametrize("family", list(FAMILY_CONFIGS))
def test_family_counts_match_modules(family):
    config = tiny_config(**FAMILY_CONFIGS[family])
    assert count_parameters(config)["total"] == _meta_numel(config)[0]


def test_qwen3_283m_matches_the_book():
    counts = count_parameters(preset("qwen3-283m"))
    assert counts["total"] == 283_347_200  # "283.35M"
    assert counts["embedding"] + counts["head"] == 194_106_880  # "194.1M embedding + head"
    assert round(counts["total"] / 1e6, 2) == 283.35


@pytest.mark.parametrize("name, expected", [
    ("gpt2-124m", 124_439_808),  # HF GPT2LMHeadModel.num_parameters()
    ("qwen3-0.6b", 596_049_920),  # Qwen3-0.6B: 0.6B total, 0.44B non-embedding
    ("stories15m", 15_191_712),
    ("stories260k", 260_032),
    ("tiny", 4_197_120),  # the GUIDE's 4.2M baseline model
])
def test_published_sizes(name, expected):
    assert count_parameters(preset(name))["total"] == expected


def test_qwen3_0_6b_non_embedding_is_0_44b():
    assert round(count_parameters(preset("qwen3-0.6b"))["non_embedding"] / 1e9, 2) == 0.44


def test_moe_active_parameters_count_top_k_experts():
    config = preset("qwen3-moe")
    counts = count_parameters(config)
    expert = 3 * config.d_model * config.moe_d_ff
    assert counts["total"] - counts["active"] == config.n_layers * (config.n_experts - config.moe_top_k) * expert


def test_flops_per_token_is_nanogpt_formula():
    config = preset("gpt2-124m")
    # nanoGPT's N excludes position embeddings but includes the (tied) token matrix used as the head.
    n = 124_439_808 - 1024 * 768
    assert flops_per_token(config, 1024) == 6 * n + 12 * 12 * 12 * 64 * 1024


def test_kv_cache_bytes_per_token():
    config = preset("qwen3-283m")  # 18 layers x 1 KV head x 160 dims x (K and V) x 2 bytes
    assert kv_cache_bytes_per_token(config) == 18 * 160 * 2 * 2


def test_training_memory_estimate_parts():
    config = preset("tiny")
    plain = training_memory_estimate(config, batch_size=8, seq_len=256)
    assert plain["weights"] == 4 * 4_197_120 and plain["optimizer"] == 8 * 4_197_120
    assert plain["total"] == sum(v for k, v in plain.items() if k != "total")
    chunked = training_memory_estimate(config, batch_size=8, seq_len=256, loss_chunk_size=32,
                                       gradient_checkpointing=True)
    assert chunked["logits"] == plain["logits"] // 8 and chunked["activations"] < plain["activations"]


def test_presets_take_a_vocab_override():
    assert preset("stories15m", vocab_size=4096).vocab_size == 4096
    assert count_parameters(preset("stories15m", vocab_size=4096))["embedding"] == 4096 * 288


def test_unknown_preset_names_the_choices():
    with pytest.raises(ConfigError, match="unknown model preset 'qwen9'.*tiny"):
        preset("qwen9")


def test_preset_with_bad_field_is_a_config_error():
    with pytest.raises(ConfigError, match="n_layerz"):
        preset("tiny", n_layerz=3)
