"""A ModelConfig <-> GGUF architecture keys (`{arch}.context_length`, ...), and which models GGUF can carry.

    arch = gguf_architecture(config)          # "llama" | "qwen3" | "qwen3moe" | "gpt2", or CheckpointError why not
    keys = architecture_keys(config, arch)    # {"qwen3.block_count": 4, ...}
    config = config_from_keys(fields, arch, vocab_size, tied)

The architecture is the Hugging Face one export_architecture picks (llama.cpp implements those graphs), with
llama.cpp's own limits on top: qwen3moe has no shared experts and always renormalises the top-k router
probabilities. RoPE scaling: none, linear, YaRN (llama.cpp's keys) and, for llama, Llama 3.1's rule, which
llama.cpp takes as a `rope_freqs` tensor of per-frequency divisors (gguf_tensors.py) as its converter
writes it; the rule's four numbers also go in `slmkit.rope.llama3.*` keys so the import rebuilds the config
exactly. Qwen3's head_dim is independent of d_model / heads, so
key_length, value_length and rope.dimension_count are always written (ollama reads the last with no default).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from slmkit.errors import CheckpointError
from slmkit.interop.hf_config import GPT2, LLAMA, QWEN3, QWEN3_MOE, export_architecture
from slmkit.model.config import ModelConfig

GGUF_ARCHITECTURES = {LLAMA: "llama", QWEN3: "qwen3", QWEN3_MOE: "qwen3moe", GPT2: "gpt2"}
LLAMA3 = "slmkit.rope.llama3"  # our keys for Llama 3.1's RoPE rule (llama.cpp reads the rope_freqs tensor)


def gguf_architecture(config: ModelConfig) -> str:
    try:
        arch = GGUF_ARCHITECTURES[export_architecture(config)]
    except CheckpointError as e:
        raise CheckpointError(f"GGUF cannot carry this model: {str(e).replace('Hugging Face', 'GGUF')}") from None
    if arch == "qwen3moe" and not config.moe_norm_topk_prob:
        raise CheckpointError("GGUF cannot carry this model: llama.cpp's qwen3moe always renormalises the top-k "
                              "router probabilities, and this model has moe_norm_topk_prob=false")
    allowed = ("none", "linear", "yarn", "llama3") if arch == "llama" else ("none", "linear", "yarn")
    if config.rope_scaling not in allowed:
        raise CheckpointError(f"GGUF export of {arch} writes RoPE scaling {', '.join(allowed)}; this model has "
                              f"rope_scaling={config.rope_scaling!r}")
    return arch


def architecture_keys(config: ModelConfig, arch: str) -> dict[str, Any]:
    c, a = config, arch
    keys: dict[str, Any] = {
        f"{a}.context_length": c.max_seq_len, f"{a}.embedding_length": c.d_model,
        f"{a}.block_count": c.n_layers, f"{a}.feed_forward_length": c.d_ff,
        f"{a}.attention.head_count": c.n_heads, f"{a}.attention.head_count_kv": c.n_kv_heads,
    }
    if arch == "gpt2":
        keys[f"{a}.attention.layer_norm_epsilon"] = float(c.norm_eps)
        return keys
    keys.update({f"{a}.attention.key_length": c.head_dim, f"{a}.attention.value_length": c.head_dim,
                 f"{a}.attention.layer_norm_rms_epsilon": float(c.norm_eps),
                 f"{a}.rope.freq_base": float(c.rope_theta), f"{a}.rope.dimension_count": c.head_dim})
    if c.rope_scaling in ("linear", "yarn"):
        keys.update({f"{a}.rope.scaling.type": c.rope_scaling, f"{a}.rope.scaling.factor": float(c.rope_scaling_factor)})
    if c.rope_scaling == "yarn":
        keys.update({f"{a}.rope.scaling.original_context_length": c.rope_original_max_seq_len or c.max_seq_len,
                     f"{a}.rope.scaling.yarn_beta_fast": float(c.rope_yarn_beta_fast),
                     f"{a}.rope.scaling.yarn_beta_slow": float(c.rope_yarn_beta_slow)})
    if c.rope_scaling == "llama3":
        keys.update({f"{LLAMA3}.factor": float(c.rope_scaling_factor),
                     f"{LLAMA3}.original_context_length": c.rope_original_max_seq_len or c.max_seq_len,
                     f"{LLAMA3}.low_freq_factor": float(c.rope_low_freq_factor),
                     f"{LLAMA3}.high_freq_factor": float(c.rope_high_freq_factor)})
    if arch == "qwen3moe":
        keys.update({f"{a}.expert_count": c.n_experts, f"{a}.expert_used_count": c.moe_top_k,
                     f"{a}.expert_feed_forward_length": c.moe_d_ff})
    return keys


def _float(value) -> float:
    """A float32 key as the decimal it was written from (1e-06, not 9.99999997e-07)."""
    return float(str(np.float32(value)))


def config_from_keys(fields: dict[str, Any], arch: str, vocab_size: int, tied: bool,
                     biases: dict[str, bool] | None = None) -> ModelConfig:
    """The ModelConfig a GGUF file's keys describe; `biases`: which bias tensors the file has."""
    def get(key: str, default=None):
        value = fields.get(f"{arch}.{key}", default)
        if value is None:
            raise CheckpointError(f"the GGUF file has no {arch}.{key}, which a {arch} model needs")
        return value

    biases = biases or {}
    heads = int(get("attention.head_count"))
    common = dict(vocab_size=vocab_size, d_model=int(get("embedding_length")), n_layers=int(get("block_count")),
                  n_heads=heads, n_kv_heads=int(get("attention.head_count_kv", heads)),
                  d_ff=int(get("feed_forward_length", 0)), max_seq_len=int(get("context_length")),
                  tie_embeddings=tied)
    if arch == "gpt2":
        return ModelConfig(**common, norm="layernorm", norm_eps=_float(get("attention.layer_norm_epsilon")),
                           mlp="gelu", positions="learned", attn_qkv_bias=True, attn_out_bias=True, mlp_bias=True)
    head_dim = int(get("attention.key_length", common["d_model"] // heads))
    if int(get("attention.value_length", head_dim)) != head_dim:
        raise CheckpointError(f"the GGUF file's key and value lengths differ ({head_dim} vs "
                              f"{get('attention.value_length')}); slmkit's attention needs them equal")
    scaling = str(fields.get(f"{arch}.rope.scaling.type", "none"))
    if scaling not in ("none", "linear", "yarn"):
        raise CheckpointError(f"the GGUF file uses RoPE scaling {scaling!r}; slmkit imports none, linear and yarn")
    config = dict(common, head_dim=head_dim, norm_eps=_float(get("attention.layer_norm_rms_epsilon")),
                  rope_theta=_float(get("rope.freq_base", 10000.0)), rope_scaling=scaling,
                  rope_scaling_factor=_float(fields.get(f"{arch}.rope.scaling.factor", 1.0)),
                  qk_norm=arch in ("qwen3", "qwen3moe"), attn_qkv_bias=biases.get("attn_q", False),
                  attn_out_bias=biases.get("attn_output", False), mlp_bias=biases.get("ffn_up", False))
    if scaling == "yarn":
        config.update(rope_original_max_seq_len=int(fields.get(f"{arch}.rope.scaling.original_context_length",
                                                                common["max_seq_len"])),
                      rope_yarn_beta_fast=_float(fields.get(f"{arch}.rope.scaling.yarn_beta_fast", 32.0)),
                      rope_yarn_beta_slow=_float(fields.get(f"{arch}.rope.scaling.yarn_beta_slow", 1.0)))
    if f"{LLAMA3}.factor" in fields:
        config.update(rope_scaling="llama3", rope_scaling_factor=_float(fields[f"{LLAMA3}.factor"]),
                      rope_original_max_seq_len=int(fields[f"{LLAMA3}.original_context_length"]),
                      rope_low_freq_factor=_float(fields[f"{LLAMA3}.low_freq_factor"]),
                      rope_high_freq_factor=_float(fields[f"{LLAMA3}.high_freq_factor"]))
    if arch == "qwen3moe":
        config.update(n_experts=int(get("expert_count")), moe_top_k=int(get("expert_used_count")),
                      moe_d_ff=int(get("expert_feed_forward_length")), moe_norm_topk_prob=True)
    return ModelConfig(**config)
