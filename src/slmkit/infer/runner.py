"""`ModelRunner`: a lean forward pass over a `Decoder`'s weights for generation.

It computes exactly what `Decoder.forward` computes (the tests compare logits at every step), but is
shaped for decoding, where Python overhead per step dominates small models:

- keys/values go into a preallocated `SlotCache` (no concatenation, no per-step mask building when all
  rows have the same length);
- q/k/v projections (and SwiGLU's gate/up) are fused into one matmul each when they are plain
  `nn.Linear`s (quantized layers are called as they are);
- RoPE cos/sin come from a table computed once for the whole context;
- grouped key/value heads: in one-token steps the queries are viewed as [batch, kv_heads, group, dim]
  so each key/value head serves its query group in a plain SDPA call (no key copies);
- only the last position's logits are computed unless asked for all (speculative verification).

The runner snapshots fused weights when built: build a new one after changing the model's weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slmkit.infer.cache import SlotCache
from slmkit.model.mlp import SwiGLU
from slmkit.model.positions import sinusoidal_embedding


def _fuse(linears: list[nn.Module]) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """One (weight, bias) for several plain nn.Linear layers that read the same input, else None."""
    if not all(type(m) is nn.Linear for m in linears):
        return None
    weight = torch.cat([m.weight.detach() for m in linears], 0)
    biases = [m.bias for m in linears]
    if all(b is None for b in biases):
        return weight, None
    bias = torch.cat([b.detach() if b is not None else torch.zeros(m.out_features, dtype=weight.dtype,
                                                                   device=weight.device)
                      for b, m in zip(biases, linears)])
    return weight, bias


class _Layer:
    """Per-block references and fused weights."""

    def __init__(self, block):
        attn = block.attn
        self.attn_norm, self.mlp_norm = block.attn_norm, block.mlp_norm
        self.q_norm, self.k_norm = attn.q_norm, attn.k_norm
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj
        self.qkv = _fuse([attn.q_proj, attn.k_proj, attn.v_proj])
        self.mlp = block.mlp
        self.gate_up = _fuse([block.mlp.gate_proj, block.mlp.up_proj]) if isinstance(block.mlp, SwiGLU) else None
        self.d_ff = block.mlp.gate_proj.out_features if isinstance(block.mlp, SwiGLU) else 0


class ModelRunner:
    """Runs `model` (a Decoder, possibly with quantized linears) against a `SlotCache`."""

    def __init__(self, model):
        self.model = model
        self.config = c = model.config
        param = next(model.parameters())
        self.device = param.device
        self.dtype = model.embed.weight.dtype
        self.n_heads, self.n_kv_heads, self.head_dim = c.n_heads, c.n_kv_heads, c.head_dim
        self.q_dim, self.kv_dim = c.q_dim, c.kv_dim
        self.layers = [_Layer(b) for b in model.blocks]
        self.gqa = c.n_heads != c.n_kv_heads
        self.cos = self.sin = None
        if model.rope is not None:
            positions = torch.arange(c.max_seq_len, device=self.device)[None]
            cos, sin = model.rope(positions, self.dtype)
            self.cos, self.sin = cos[0], sin[0]  # [max_seq_len, head_dim]

    def new_cache(self, rows: int, max_len: int | None = None) -> SlotCache:
        return SlotCache.for_model(self.model, rows, max_len, dtype=self.dtype)

    @torch.inference_mode()
    def forward(self, ids: torch.Tensor, cache: SlotCache, row0: int = 0, all_logits: bool = False) -> torch.Tensor:
        """Append `ids` [B, T] to cache rows row0..row0+B-1 and return float32 logits.

        Returns [B, vocab] for the last position, or [B, T, vocab] with all_logits. Row b's new tokens
        take positions lengths[b] .. lengths[b]+T-1 (its own count of cached tokens).
        """
        B, T = ids.shape
        lens = cache.lengths[row0:row0 + B]
        start, uniform = lens[0], all(n == lens[0] for n in lens)
        for b in range(B):
            cache.check_room(row0 + b, T)
        end = max(lens) + T
        if uniform:
            positions = cache.slots[start:start + T][None]  # [1, T]
        else:
            positions = cache.lengths_t[row0:row0 + B, None] + cache.slots[:T][None]  # [B, T]
        mask, causal = None, False
        if uniform and start == 0:
            causal = T > 1
        elif not (uniform and T == 1):
            # Query at position p sees slots <= p of its own row (slots past a row's length are stale).
            mask = (cache.slots[:end][None, None] <= positions[:, :, None])[:, None]  # [B, 1, T, end]

        model = self.model
        x = model.embed(ids)
        if model.pos_embed is not None:
            x = x + model.pos_embed(positions)
        elif self.config.positions == "sinusoidal":
            x = x + sinusoidal_embedding(positions, self.config.d_model, x.dtype)
        rope = None
        if self.cos is not None:
            if uniform:
                rope = self.cos[start:start + T][None, None], self.sin[start:start + T][None, None]
            else:
                rope = self.cos[positions][:, None], self.sin[positions][:, None]  # [B, 1, T, head_dim]
        rows = torch.arange(row0, row0 + B, device=ids.device) if not uniform else None

        for i, layer in enumerate(self.layers):
            h = layer.attn_norm(x)
            if layer.qkv is not None:
                qkv = F.linear(h, *layer.qkv)
                q, k, v = qkv.split((self.q_dim, self.kv_dim, self.kv_dim), -1)
            else:
                q, k, v = layer.q_proj(h), layer.k_proj(h), layer.v_proj(h)
            if T == 1:
                # One query per row: view q as [B, n_kv_heads, group, head_dim] so each key/value head
                # serves its group of query heads in one plain SDPA call (no copies, no GQA expansion).
                q = q.view(B, self.n_kv_heads, self.n_heads // self.n_kv_heads, self.head_dim)
                k = k.view(B, self.n_kv_heads, 1, self.head_dim)
                v = v.view(B, self.n_kv_heads, 1, self.head_dim)
                if layer.q_norm is not None:
                    q, k = layer.q_norm(q), layer.k_norm(k)
            else:
                q = q.view(B, T, self.n_heads, self.head_dim)
                k = k.view(B, T, self.n_kv_heads, self.head_dim)
                if layer.q_norm is not None:
                    q, k = layer.q_norm(q), layer.k_norm(k)
                q, k = q.transpose(1, 2), k.transpose(1, 2)
                v = v.view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
            if rope is not None:
                q, k = _rotate(q, *rope), _rotate(k, *rope)
            keys, values = cache.keys[i], cache.values[i]
            if uniform:
                keys[row0:row0 + B, :, start:start + T] = k
                values[row0:row0 + B, :, start:start + T] = v
            elif T == 1:
                slot = cache.lengths_t[row0:row0 + B]
                keys[rows, :, slot] = k[:, :, 0]
                values[rows, :, slot] = v[:, :, 0]
            else:
                for b, n in enumerate(lens):
                    keys[row0 + b, :, n:n + T] = k[b]
                    values[row0 + b, :, n:n + T] = v[b]
            y = F.scaled_dot_product_attention(q, keys[row0:row0 + B, :, :end], values[row0:row0 + B, :, :end],
                                               attn_mask=mask, is_causal=causal,
                                               enable_gqa=self.gqa and T > 1)
            y = y.reshape(B, 1, self.q_dim) if T == 1 else y.transpose(1, 2).reshape(B, T, self.q_dim)
            x = x + layer.out_proj(y)
            h = layer.mlp_norm(x)
            if layer.gate_up is not None:
                gate, up = F.linear(h, *layer.gate_up).split((layer.d_ff, layer.d_ff), -1)
                x = x + layer.mlp.down_proj(F.silu(gate) * up)
            else:
                out = layer.mlp(h)
                x = x + (out[0] if isinstance(out, tuple) else out)

        for b in range(B):
            cache.lengths[row0 + b] += T
        cache.lengths_t[row0:row0 + B] += T
        if not all_logits:
            x = x[:, -1]
        return model.head(model.final_norm(x)).float()


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE, "rotate half" layout (as slmkit.model.positions.apply_rotary); cos/sin broadcast over heads."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin
