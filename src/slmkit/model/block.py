"""One transformer block: pre-norm attention and pre-norm MLP (dense or MoE), each with a residual."""

from __future__ import annotations

import torch
from torch import nn

from slmkit.model.attention import CausalSelfAttention
from slmkit.model.config import ModelConfig
from slmkit.model.kv_cache import CacheStep, KVCache
from slmkit.model.mlp import make_mlp
from slmkit.model.moe import MoE
from slmkit.model.norms import make_norm


class Block(nn.Module):
    def __init__(self, config: ModelConfig, layer_index: int):
        super().__init__()
        self.attn_norm = make_norm(config.norm, config.d_model, config.norm_eps)
        self.attn = CausalSelfAttention(config, layer_index)
        self.mlp_norm = make_norm(config.norm, config.d_model, config.norm_eps)
        self.mlp = MoE(config) if config.is_moe else make_mlp(config)
        self.mlp_dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
        attention_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        step: CacheStep | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: [batch, seq, d_model] -> (x, router logits [batch*seq, n_experts] or None for dense)."""
        x = x + self.attn(self.attn_norm(x), rope, attention_mask, cache, step)
        h = self.mlp(self.mlp_norm(x))
        router_logits = None
        if isinstance(h, tuple):
            h, router_logits = h
        return x + self.mlp_dropout(h), router_logits
