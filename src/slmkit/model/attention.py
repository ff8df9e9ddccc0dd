"""Causal self-attention with grouped key/value heads (MHA, GQA, MQA), optional QK-norm and RoPE.

The attention itself is `torch.nn.functional.scaled_dot_product_attention`: in training it runs with
`is_causal=True`, so no [T, T] mask is ever built and fused kernels (flash / memory-efficient) apply.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slmkit.model.config import ModelConfig
from slmkit.model.kv_cache import CacheStep, KVCache
from slmkit.model.norms import RMSNorm
from slmkit.model.positions import apply_rotary


class CausalSelfAttention(nn.Module):
    def __init__(self, config: ModelConfig, layer_index: int):
        super().__init__()
        self.layer_index = layer_index  # which slot of a KVCache this layer owns
        self.n_heads = config.n_heads
        self.n_kv_heads = config.n_kv_heads
        self.head_dim = config.head_dim
        self.dropout = config.dropout
        self.q_proj = nn.Linear(config.d_model, config.q_dim, bias=config.attn_qkv_bias)
        self.k_proj = nn.Linear(config.d_model, config.kv_dim, bias=config.attn_qkv_bias)
        self.v_proj = nn.Linear(config.d_model, config.kv_dim, bias=config.attn_qkv_bias)
        self.out_proj = nn.Linear(config.q_dim, config.d_model, bias=config.attn_out_bias)
        self.out_proj.is_residual_projection = True  # scaled init (see Decoder._init_weights)
        # QK-norm (Qwen3): RMSNorm over each head's vector, before RoPE; keeps attention logits bounded.
        self.q_norm = RMSNorm(config.head_dim, config.norm_eps) if config.qk_norm else None
        self.k_norm = RMSNorm(config.head_dim, config.norm_eps) if config.qk_norm else None
        self.residual_dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
        attention_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        step: CacheStep | None = None,
    ) -> torch.Tensor:
        """x: [batch, seq, d_model] -> [batch, seq, d_model].

        rope: (cos, sin) [batch or 1, seq, head_dim] or None for models without rotary positions.
        attention_mask: bool [batch, 1, seq, keys] (True = may attend) or None for plain causal.
        cache/step: write this call's keys/values into each row's next slots of `cache` and attend over
        the rows' filled prefixes (see kv_cache.py).
        """
        batch, seq, _ = x.shape
        q = self.q_proj(x).view(batch, seq, self.n_heads, self.head_dim)
        k = self.k_proj(x).view(batch, seq, self.n_kv_heads, self.head_dim)
        v = self.v_proj(x).view(batch, seq, self.n_kv_heads, self.head_dim)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [batch, heads, seq, head_dim]
        if rope is not None:
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)

        is_causal = attention_mask is None
        if cache is not None:
            k, v = cache.store(self.layer_index, step, k, v)
            is_causal = step.is_causal
        # Each key/value head serves n_heads // n_kv_heads consecutive query heads. SDPA's enable_gqa
        # broadcasts them inside the kernel (no repeated copies of k and v, and no reduction of their
        # gradients in backward); other devices get the explicit repeat.
        gqa = self.n_kv_heads != self.n_heads
        native_gqa = gqa and x.device.type in ("cpu", "cuda")
        if gqa and not native_gqa:
            repeats = self.n_heads // self.n_kv_heads
            k = k.repeat_interleave(repeats, dim=1)
            v = v.repeat_interleave(repeats, dim=1)
        y = F.scaled_dot_product_attention(
            q, k, v,
            attn_mask=attention_mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=is_causal and attention_mask is None,
            enable_gqa=native_gqa,
        )
        y = y.transpose(1, 2).reshape(batch, seq, self.n_heads * self.head_dim)
        return self.residual_dropout(self.out_proj(y))
