"""Sizes from the config alone, no weights needed: parameters, FLOPs per token, KV-cache bytes,
and a training-memory estimate. Closed-form, so `slm model info qwen3-0.6b` is instant.
"""

from __future__ import annotations

from slmkit.model.config import ModelConfig


def count_parameters(config: ModelConfig) -> dict[str, int]:
    """Parameter counts by component (a tied head shares the embedding and counts once).

    Keys: embedding (token + learned position tables), head (0 when tied), attention, mlp, norms,
    per_layer, non_embedding (everything but embedding and head), total, and for MoE: active (the
    parameters one token touches: top_k of the routed experts).
    """
    c = config
    d = c.d_model
    embedding = c.vocab_size * d + (c.max_seq_len * d if c.positions == "learned" else 0)
    head = 0 if c.tie_embeddings else c.vocab_size * d
    norm = d * (2 if c.norm == "layernorm" else 1)  # LayerNorm has a bias too

    attention = d * c.q_dim + 2 * d * c.kv_dim + c.q_dim * d
    attention += (c.q_dim + 2 * c.kv_dim) * c.attn_qkv_bias + d * c.attn_out_bias
    attention += 2 * c.head_dim * c.qk_norm  # q_norm and k_norm are RMSNorms over head_dim

    if c.is_moe:
        expert = 3 * d * c.moe_d_ff
        mlp = d * c.n_experts + c.n_experts * expert + c.n_shared_experts * expert  # router + routed + shared
        mlp_active = d * c.n_experts + (c.moe_top_k + c.n_shared_experts) * expert
    else:
        mlp = _dense_mlp_params(c)
        mlp_active = mlp

    per_layer = attention + mlp + 2 * norm
    non_embedding = c.n_layers * per_layer + norm  # + final norm
    total = embedding + head + non_embedding
    active = total - c.n_layers * (mlp - mlp_active)
    return {
        "embedding": embedding,
        "head": head,
        "attention": c.n_layers * attention,
        "mlp": c.n_layers * mlp,
        "norms": (2 * c.n_layers + 1) * norm,
        "per_layer": per_layer,
        "non_embedding": non_embedding,
        "total": total,
        "active": active,
    }


def _dense_mlp_params(c: ModelConfig) -> int:
    if c.mlp == "swiglu":
        return 3 * c.d_model * c.d_ff + (2 * c.d_ff + c.d_model) * c.mlp_bias
    return 2 * c.d_model * c.d_ff + (c.d_ff + c.d_model) * c.mlp_bias  # gelu, relu2: up and down


def matmul_parameters(config: ModelConfig) -> int:
    """Parameters multiplied per token: the active non-embedding ones plus the output head matrix
    (which is the embedding when tied). Embedding lookups cost no FLOPs."""
    counts = count_parameters(config)
    return counts["active"] - counts["embedding"] - counts["head"] + config.vocab_size * config.d_model


def flops_per_token(config: ModelConfig, seq_len: int | None = None) -> int:
    """Training FLOPs per token (forward + backward) as in nanoGPT / PaLM: 6·N + 12·L·H·Q·T.

    N = matmul parameters per token, L layers, H query heads, Q head_dim, T context length
    (the attention-score term, averaged as if every query saw T keys). Inference is about a third.
    """
    T = seq_len or config.max_seq_len
    return 6 * matmul_parameters(config) + 12 * config.n_layers * config.n_heads * config.head_dim * T


def kv_cache_bytes_per_token(config: ModelConfig, bytes_per_value: int = 2) -> int:
    """Bytes the KV cache grows by per generated token (keys + values, all layers); bf16 by default."""
    return 2 * config.n_layers * config.kv_dim * bytes_per_value


def training_memory_estimate(
    config: ModelConfig,
    batch_size: int,
    seq_len: int | None = None,
    activation_bytes: int = 2,
    gradient_checkpointing: bool = False,
    loss_chunk_size: int | None = None,
) -> dict[str, int]:
    """A rough training-memory budget in bytes with AdamW and fp32 master weights.

    weights 4 B/param, gradients 4 B/param, Adam moments 8 B/param; activations ~34·d bytes per token per
    layer at 2-byte precision (Korthikanti et al. 2022, without the attention matrix since SDPA never
    materialises it) — only the block inputs with gradient checkpointing; logits: fp32 logits and their
    gradient for the positions held at once (all of them, or one chunk). Ignores allocator overhead.
    """
    T = seq_len or config.max_seq_len
    n = count_parameters(config)["total"]
    tokens = batch_size * T
    d = config.d_model
    if gradient_checkpointing:
        per_layer = tokens * d * activation_bytes  # only each block's input is kept
        recompute = tokens * 34 * d * activation_bytes // 2  # one block's activations live during backward
    else:
        per_layer = tokens * 34 * d * activation_bytes // 2
        recompute = 0
    width = config.moe_top_k * config.moe_d_ff if config.is_moe else config.d_ff
    per_layer += 0 if gradient_checkpointing else tokens * 3 * width * activation_bytes  # MLP hidden (beyond 4·d)
    logit_positions = batch_size * (min(loss_chunk_size, T) if loss_chunk_size else T)
    parts = {
        "weights": 4 * n,
        "gradients": 4 * n,
        "optimizer": 8 * n,
        "activations": config.n_layers * per_layer + recompute,
        "logits": 2 * 4 * logit_positions * config.vocab_size,
    }
    parts["total"] = sum(parts.values())
    return parts
