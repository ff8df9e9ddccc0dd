"""Named model shapes: `slm model list` shows them, `preset(name, vocab_size=...)` builds one.

A trained tokenizer decides the vocabulary, so every preset accepts overrides (vocab_size most often).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from slmkit.errors import ConfigError
from slmkit.model.config import ModelConfig


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    fields: dict[str, Any] = field(default_factory=dict)

    def build(self, **overrides: Any) -> ModelConfig:
        return ModelConfig(**{**self.fields, **overrides})


def _llama2c(dim: int, layers: int, heads: int, kv_heads: int, hidden: int, vocab: int, ctx: int) -> dict[str, Any]:
    # llama2.c: RMSNorm eps 1e-5, RoPE theta 1e4, SwiGLU, shared input/output embedding, no biases.
    return dict(vocab_size=vocab, d_model=dim, n_layers=layers, n_heads=heads, n_kv_heads=kv_heads, d_ff=hidden,
                max_seq_len=ctx, norm="rmsnorm", norm_eps=1e-5, mlp="swiglu", positions="rope", rope_theta=10000.0,
                tie_embeddings=True)


def _qwen3(vocab: int, dim: int, layers: int, heads: int, kv_heads: int, head_dim: int, ff: int, ctx: int,
           tied: bool, **extra: Any) -> dict[str, Any]:
    return dict(vocab_size=vocab, d_model=dim, n_layers=layers, n_heads=heads, n_kv_heads=kv_heads,
                head_dim=head_dim, d_ff=ff, max_seq_len=ctx, norm="rmsnorm", norm_eps=1e-6, mlp="swiglu",
                positions="rope", rope_theta=1_000_000.0, qk_norm=True, tie_embeddings=tied, **extra)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset("tiny", "CPU demo, Qwen3-style (QK-norm, GQA 4q/2kv, head_dim 64), ~4.2M params",
               _qwen3(4096, 256, 4, 4, 2, 64, 768, 1024, tied=True)),
        Preset("stories260k", "llama2.c TinyStories 260K: dim 64, 5 layers, 8 heads / 4 KV, own 512-token vocab",
               _llama2c(64, 5, 8, 4, 172, 512, 512)),
        Preset("stories15m", "llama2.c TinyStories 15M: dim 288, 6 layers, 6 heads, ctx 256, Llama-2 32K vocab",
               _llama2c(288, 6, 6, 6, 768, 32000, 256)),
        Preset("stories42m", "llama2.c TinyStories 42M: dim 512, 8 layers, 8 heads, ctx 1024",
               _llama2c(512, 8, 8, 8, 1376, 32000, 1024)),
        Preset("stories110m", "llama2.c TinyStories 110M: dim 768, 12 layers, 12 heads, ctx 1024",
               _llama2c(768, 12, 12, 12, 2048, 32000, 1024)),
        Preset("gpt2-124m", "GPT-2 small (nanoGPT): 12 layers, 12 heads, d 768, learned positions, LayerNorm, GELU",
               dict(vocab_size=50257, d_model=768, n_layers=12, n_heads=12, d_ff=3072, max_seq_len=1024,
                    norm="layernorm", norm_eps=1e-5, mlp="gelu", positions="learned", tie_embeddings=True,
                    attn_qkv_bias=True, attn_out_bias=True, mlp_bias=True)),
        Preset("qwen3-283m", "the book's Qwen3: d 640, 18 layers, 4q/1kv heads of 160, d_ff 2048, ctx 32K, untied",
               _qwen3(151_646, 640, 18, 4, 1, 160, 2048, 32_768, tied=False)),
        Preset("qwen3-0.6b", "the real Qwen3-0.6B shape: d 1024, 28 layers, 16q/8kv heads of 128, d_ff 3072, tied",
               _qwen3(151_936, 1024, 28, 16, 8, 128, 3072, 40_960, tied=True)),
        Preset("qwen3-moe", "small Qwen3-MoE: d 512, 8 layers, 16 experts (top 2, d_ff 384 each), Qwen3 vocab",
               _qwen3(151_646, 512, 8, 8, 2, 64, 1536, 4096, tied=True, n_experts=16, moe_top_k=2,
                      moe_d_ff=384, moe_norm_topk_prob=True, moe_aux_loss_coef=0.001)),
    ]
}


def preset_names() -> list[str]:
    return list(PRESETS)


def preset(name: str, **overrides: Any) -> ModelConfig:
    """The ModelConfig of a named preset, with fields overridden (e.g. vocab_size from a tokenizer)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown model preset '{name}'; available: {', '.join(PRESETS)} (see 'slm model list')")
    try:
        return PRESETS[name].build(**overrides)
    except TypeError as e:  # an unknown field name
        raise ConfigError(f"preset '{name}': {e}") from None
    except ValueError as e:
        raise ConfigError(f"preset '{name}': {e}") from None
