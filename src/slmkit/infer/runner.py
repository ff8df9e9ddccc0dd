"""`ModelRunner`: a lean forward pass over a `Decoder`'s weights for generation.

It computes what `Decoder.forward` computes (the tests compare logits at every step), but is shaped
for decoding, where per-step overhead dominates small models:

- keys/values go into a preallocated `SlotCache` (no concatenation, no per-step mask building when all
  rows have the same length);
- q/k/v projections (and SwiGLU's gate/up) are fused into one matmul each when they are plain
  `nn.Linear`s (quantized layers are called as they are);
- matmul weights are kept in the layout that torch's CPU matrix-vector kernels read fastest: a
  contiguous [in, out] copy when out >= in (about 1.3-1.6x faster than [out, in] for one row on this
  machine), the model's own [out, in] weight otherwise;
- RoPE cos/sin come from a table computed once for the whole context;
- only the last position's logits are computed unless asked for all (speculative verification).

One-token, one-row decoding (the batch-1 case and speculative drafting) takes a dedicated path
(`FastDecode`, fast_decode.py) for RMSNorm + SwiGLU + RoPE decoders with plain Linear layers (Llama, Qwen3): about
25 torch calls per layer, all into preallocated buffers with precomputed views, no per-step Python
objects besides a few views, no masks. Per step, one multiply builds every layer's QK-norm weight x
RoPE cos/sin product, so QK-norm + RoPE cost 7 calls per layer for q and k together. One token for
several rows of different lengths (batched decoding, continuous batching) takes the same arithmetic
for B rows (`FastDecode.step_rows`): per-row positions, one indexed key/value write and one masked
attention per layer.

The runner snapshots weights when built: build a new one after changing the model's weights. It keeps
per-runner scratch buffers, so one runner must not be used from two threads at once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from slmkit.infer.cache import SlotCache
from slmkit.infer.fast_decode import FastDecode
from slmkit.infer.weight_layout import fuse_linears
from slmkit.model.mlp import SwiGLU
from slmkit.model.positions import sinusoidal_embedding


class _Layer:
    """Per-block references and fused weights."""

    def __init__(self, block):
        attn = block.attn
        self.attn_norm, self.mlp_norm = block.attn_norm, block.mlp_norm
        self.q_norm, self.k_norm = attn.q_norm, attn.k_norm
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj
        self.qkv = fuse_linears([attn.q_proj, attn.k_proj, attn.v_proj])  # ([in, out], bias)
        self.mlp = block.mlp
        self.gate_up = fuse_linears([block.mlp.gate_proj, block.mlp.up_proj]) if isinstance(block.mlp, SwiGLU) else None
        self.d_ff = block.mlp.gate_proj.out_features if isinstance(block.mlp, SwiGLU) else 0


class ModelRunner:
    """Runs `model` (a Decoder, possibly with quantized linears) against a `SlotCache`."""

    def __init__(self, model, fast: bool = True):
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
        self.fast = FastDecode(self) if fast and FastDecode.supports(self) else None

    def new_cache(self, rows: int, max_len: int | None = None) -> SlotCache:
        return SlotCache.for_model(self.model, rows, max_len, dtype=self.dtype)

    def decode(self, token: int, cache: SlotCache, row: int = 0) -> torch.Tensor:
        """Append one token (a Python int) to cache row `row`; float32 logits [1, vocab] for it."""
        if self.fast is not None:
            with torch.inference_mode():
                return self.fast.step(token, cache, row)
        return self.forward(torch.tensor([[token]], device=self.device), cache, row0=row)

    @torch.inference_mode()
    def forward(self, ids: torch.Tensor, cache: SlotCache, row0: int = 0, all_logits: bool = False) -> torch.Tensor:
        """Append `ids` [B, T] to cache rows row0..row0+B-1 and return float32 logits.

        Returns [B, vocab] for the last position, or [B, T, vocab] with all_logits. Row b's new tokens
        take positions lengths[b] .. lengths[b]+T-1 (its own count of cached tokens).
        """
        B, T = ids.shape
        if T == 1 and self.fast is not None:
            logits = self.fast.step(ids, cache, row0) if B == 1 else self.fast.step_rows(ids, cache, row0)
            return logits[:, None] if all_logits else logits
        lens = cache.lengths[row0:row0 + B]
        start, uniform = lens[0], all(n == lens[0] for n in lens)
        for b in range(B):
            cache.check_room(row0 + b, T)
        end = max(lens) + T
        if uniform:
            positions = cache.slots[start:start + T][None]  # [1, T]
        else:
            lengths_t = torch.tensor(lens, device=ids.device)
            positions = lengths_t[:, None] + cache.slots[:T][None]  # [B, T]
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
                qkv = F.linear(h, layer.qkv[0].t(), layer.qkv[1])
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
                keys[rows, :, lengths_t] = k[:, :, 0]
                values[rows, :, lengths_t] = v[:, :, 0]
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
                gate, up = F.linear(h, layer.gate_up[0].t(), layer.gate_up[1]).split((layer.d_ff, layer.d_ff), -1)
                x = x + layer.mlp.down_proj(F.silu(gate) * up)
            else:
                out = layer.mlp(h)
                x = x + (out[0] if isinstance(out, tuple) else out)

        for b in range(B):
            cache.lengths[row0 + b] += T
        if not all_logits:
            x = x[:, -1]
        x = model.final_norm(x)
        if self.fast is not None and type(self.fast.head) is torch.Tensor:
            return F.linear(x, self.fast.head.t()).float()
        return model.head(x).float()


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE, "rotate half" layout (as slmkit.model.positions.apply_rotary); cos/sin broadcast over heads."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin
