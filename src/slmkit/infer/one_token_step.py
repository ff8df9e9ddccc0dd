"""`OneTokenStep`: the one specialised decode step beside `Decoder.forward` — one new token for each of
B cache rows (each row at its own length), for RMSNorm + SwiGLU + RoPE decoders (Llama, Qwen3).

It computes what `Decoder.forward(ids[B, 1], cache=...)` computes (the tests compare logits and tokens
for every model it accepts), regrouped into ~27 torch calls per layer into preallocated buffers, which
is what small models' decoding is bound by:

- RMSNorm: one batched dot product for eps + x.x/d, rsqrt, two multiplies;
- QK-norm + RoPE for all q and k heads at once, as rows of one [n_heads + n_kv_heads, head_dim] view:
  rope(n * w) = n * (w * cos) + roll(n) * (roll(w) * sign * sin), where n = q * r and r is a per-head
  scalar, so  out = (q * A + roll(q) * B) * r  with A, B built for every layer by one multiply per
  step; the query rows of A and B also carry SDPA's 1/sqrt(head_dim);
- attention: matmul(q, K^T) -> softmax -> matmul(., V) over views of the rows' filled prefixes; when
  the rows have different lengths an additive mask hides the slots past each row's length;
- every projection is a `LinearKernel` (slmkit.quant.kernels): fused q/k/v and gate/up float matrices,
  int8 / int4 kernels, or the module itself; residual adds are fused into the output projections.

The step snapshots weights when built: build a new one after changing the model's weights. Its scratch
buffers make one step object unsafe to use from two threads at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from slmkit.model.kv_cache import KVCache
from slmkit.model.mlp import SwiGLU
from slmkit.model.norms import RMSNorm
from slmkit.quant.kernels import HEAD_COPY_LIMIT, LinearKernel, linear_kernel


@dataclass
class LayerWeights:
    """One block's weights as the step uses them."""

    attn_norm: torch.Tensor  # [d_model]
    attn_eps: torch.Tensor  # scalar
    qkv: LinearKernel  # d_model -> q_dim + 2 * kv_dim
    out: LinearKernel  # q_dim -> d_model
    mlp_norm: torch.Tensor
    mlp_eps: torch.Tensor
    gate_up: LinearKernel  # d_model -> 2 * d_ff
    down: LinearKernel  # d_ff -> d_model
    d_ff: int


def refusal(model) -> str | None:
    """Why `OneTokenStep` cannot run `model` (the caller then decodes with Decoder.forward), or None."""
    c = model.config
    if getattr(model, "adapter_route", None) is not None:
        return "it routes batch rows to several adapters (the step holds one set of weights)"
    if model.embed.weight.dtype != torch.float32:
        return f"its weights are {model.embed.weight.dtype}, the step is float32 only"
    if model.rope is None:
        return f"it uses {c.positions} positions, not rotary ones"
    if type(model.final_norm) is not RMSNorm:
        return f"its norm is {type(model.final_norm).__name__}, not RMSNorm"
    if type(model.head) is nn.Linear and (model.head.bias is not None or model.head.weight.dtype != torch.float32):
        return "its output head has a bias or is not float32"
    for i, block in enumerate(model.blocks):
        if type(block.mlp) is not SwiGLU:
            return f"block {i}'s MLP is {type(block.mlp).__name__}, not SwiGLU"
        norms = [block.attn_norm, block.mlp_norm] + ([block.attn.q_norm, block.attn.k_norm]
                                                      if block.attn.q_norm is not None else [])
        if any(type(n) is not RMSNorm for n in norms):
            return f"block {i} has a norm that is not RMSNorm"
    if c.n_heads % c.n_kv_heads or c.head_dim % 2:
        return "its heads do not group evenly or head_dim is odd"
    return None


class OneTokenStep:
    def __init__(self, model):
        reason = refusal(model)
        if reason is not None:
            raise ValueError(f"OneTokenStep cannot run this model: {reason}")
        c = model.config
        self.device = dev = model.embed.weight.device
        H, Hkv, D = c.n_heads, c.n_kv_heads, c.head_dim
        self.H, self.Hkv, self.D, self.d, self.g = H, Hkv, D, c.d_model, H // Hkv
        self.q_dim, self.kv_dim = c.q_dim, c.kv_dim
        self.inv_d, self.inv_D = 1.0 / c.d_model, 1.0 / D
        scalar = lambda value: torch.tensor(value, dtype=torch.float32, device=dev)  # noqa: E731

        # Per-layer QK-norm weights (ones without QK-norm), query rows scaled by SDPA's 1/sqrt(head_dim).
        self.qk_norm = model.blocks[0].attn.q_norm is not None
        wa = []
        for block in model.blocks:
            attn = block.attn
            ones = torch.ones(D, device=dev)
            wq, wk = (attn.q_norm.weight.detach(), attn.k_norm.weight.detach()) if self.qk_norm else (ones, ones)
            wa.append(torch.cat([(wq / math.sqrt(D)).expand(H, D), wk.expand(Hkv, D)], 0))
        self.WA = torch.stack(wa)  # [L, H + Hkv, D]
        self.WB = torch.roll(self.WA, D // 2, -1)
        self.qk_eps = scalar(model.blocks[0].attn.q_norm.eps if self.qk_norm else 0.0)
        sign = torch.cat([-torch.ones(D // 2, device=dev), torch.ones(D // 2, device=dev)])
        cos, sin = model.rope(torch.arange(c.max_seq_len, device=dev)[None], torch.float32)
        self.cos, self.sin = cos[0], sin[0] * sign  # [max_seq_len, D]
        self.roll_index = torch.roll(torch.arange(D, device=dev), D // 2)

        self.embed = model.embed.weight.detach()
        self.head = linear_kernel([model.head], HEAD_COPY_LIMIT)
        self.softcap = c.logit_softcap
        self.final_norm, self.final_eps = model.final_norm.weight.detach(), scalar(model.final_norm.eps)
        self.layers = [LayerWeights(
            b.attn_norm.weight.detach(), scalar(b.attn_norm.eps),
            linear_kernel([b.attn.q_proj, b.attn.k_proj, b.attn.v_proj]), linear_kernel([b.attn.out_proj]),
            b.mlp_norm.weight.detach(), scalar(b.mlp_norm.eps),
            linear_kernel([b.mlp.gate_proj, b.mlp.up_proj]), linear_kernel([b.mlp.down_proj]),
            b.mlp.gate_proj.out_features) for b in model.blocks]
        self._buffers: dict[int, _Buffers] = {}

    def step(self, ids, cache: KVCache, row0: int = 0) -> torch.Tensor:
        """Append one token to each of cache rows row0..row0+B-1 and return float32 logits [B, vocab].

        ids: a Python int (one row) or a LongTensor of B ids ([B] or [B, 1]).
        """
        B = 1 if isinstance(ids, int) else ids.numel()
        lengths = cache.lengths[row0:row0 + B]
        if max(lengths) >= cache.max_len or len(lengths) < B:
            cache.prepare(B, 1, row0)  # raises the cache's own message
        buf = self._buffers.get(B) or self._buffers.setdefault(B, _Buffers(self, B))
        keys, values, keys_t, values_flat = _row_views(cache, row0, B)
        n = max(lengths) + 1
        k_all = keys_t.narrow(3, 0, n).unbind(0)  # [B * Hkv, D, n] per layer
        v_all = values_flat.narrow(2, 0, n).unbind(0)  # [B * Hkv, n, D] per layer
        uniform = min(lengths) == n - 1
        if uniform:
            p = n - 1
            k_slot, v_slot = keys.select(3, p).unbind(0), values.select(3, p).unbind(0)  # [B, Hkv, D] per layer
            torch.mul(self.WA, self.cos[p], out=buf.A1)
            torch.mul(self.WB, self.sin[p], out=buf.B1)
            A, Bm, mask = buf.A1_layers, buf.B1_layers, None
        else:
            pos = torch.tensor(lengths, device=self.device)
            rows = buf.rows if row0 == 0 else buf.rows + row0
            A = (self.WA[:, None] * self.cos[pos][None, :, None]).unbind(0)  # [B, H + Hkv, D] per layer
            Bm = (self.WB[:, None] * self.sin[pos][None, :, None]).unbind(0)
            # True where a slot lies past its row's length: [B * Hkv, 1, n], one row per key/value head
            mask = (cache.slots[:n] > pos[:, None, None]).repeat_interleave(self.Hkv, 0)
        if isinstance(ids, int):
            buf.ids.fill_(ids)
            ids = buf.ids
        x, h = buf.x, buf.h
        torch.index_select(self.embed, 0, ids.reshape(B), out=x)
        for i, w in enumerate(self.layers):
            self._rms_norm(buf, w.attn_norm, w.attn_eps)
            w.qkv.matmul(h, out=buf.qkv)
            if buf.qk_copy:
                buf.qk.copy_(buf.qkv_qk)
            torch.index_select(buf.qk_rows, 1, self.roll_index, out=buf.rolled_rows)  # halves swapped
            torch.mul(buf.qk, A[i], out=buf.t)
            buf.t.addcmul_(buf.rolled, Bm[i])
            if self.qk_norm:
                torch.baddbmm(self.qk_eps, buf.qk_a, buf.qk_b, alpha=self.inv_D, out=buf.ssq)
                buf.ssq.rsqrt_()
                torch.mul(buf.t, buf.ssq3, out=buf.qkn)
            if uniform:
                k_slot[i].copy_(buf.kn)
                v_slot[i].copy_(buf.v)
            else:
                cache.kv[0, i][rows, :, pos] = buf.kn
                cache.kv[1, i][rows, :, pos] = buf.v
            q = buf.q3 if B == 1 else buf.q.reshape(B * self.Hkv, self.g, self.D)
            scores = torch.bmm(q, k_all[i])  # [B * Hkv, group, n]
            if mask is not None:
                scores.masked_fill_(mask, float("-inf"))
            torch.bmm(torch.softmax(scores, -1), v_all[i], out=buf.att3)
            w.out.add_matmul_(x, buf.att2)
            self._rms_norm(buf, w.mlp_norm, w.mlp_eps)
            gate_up, gate, up, product = buf.mlp[w.d_ff]
            w.gate_up.matmul(h, out=gate_up)
            F.silu(gate, inplace=True)
            torch.mul(gate, up, out=product)
            w.down.add_matmul_(x, product)
        for b in range(B):
            cache.lengths[row0 + b] += 1
        self._rms_norm(buf, self.final_norm, self.final_eps)
        logits = self.head.matmul(h)
        if self.softcap is not None:  # Decoder.logits' cap * tanh(logits / cap)
            logits = logits.div_(self.softcap).tanh_().mul_(self.softcap)
        return logits

    def _rms_norm(self, buf: _Buffers, weight: torch.Tensor, eps: torch.Tensor) -> None:
        # h = x * rsqrt(mean(x^2) + eps) * weight, for every row: eps + x.x / d in one batched matmul
        torch.baddbmm(eps, buf.x_row, buf.x_col, alpha=self.inv_d, out=buf.ss)
        buf.ss.rsqrt_()
        torch.mul(buf.x, buf.ss2, out=buf.h)
        buf.h.mul_(weight)


class _Buffers:
    """Scratch tensors and their views for steps of B rows (made once per B, reused every step).

    For one row the per-head tensors are 2-D ([heads, D]): torch's small-tensor kernels cost up to 4x
    less per call on 2-D than on 3-D inputs (index_select most), which is what one-row decoding is bound by.
    """

    def __init__(self, step: OneTokenStep, B: int):
        dev, H, Hkv, D, d = step.device, step.H, step.Hkv, step.D, step.d
        zeros = lambda *shape: torch.zeros(shape, device=dev)  # noqa: E731
        heads = H + Hkv
        lead = () if B == 1 else (B,)
        split = step.q_dim + step.kv_dim
        self.ids = torch.zeros(B, dtype=torch.long, device=dev)
        self.rows = torch.arange(B, device=dev)
        self.x, self.h = zeros(B, d), zeros(B, d)
        self.x_row, self.x_col = self.x.view(B, 1, d), self.x.view(B, d, 1)
        self.ss = zeros(B, 1, 1)
        self.ss2 = self.ss.view(B, 1)
        self.qkv = zeros(B, split + step.kv_dim)
        self.qkv_qk = self.qkv[:, :split].view(*lead, heads, D)
        # One row's q and k heads are contiguous inside qkv; several rows' are not, so they are copied
        # into a buffer of their own (one call) for the batched dot products below.
        self.qk_copy = B > 1
        self.qk = zeros(B, heads, D) if self.qk_copy else self.qkv_qk
        self.qk_rows = self.qk.view(B * heads, D)
        self.qk_a, self.qk_b = self.qk.view(B * heads, 1, D), self.qk.view(B * heads, D, 1)
        self.v = self.qkv[:, split:].view(*lead, Hkv, D)
        self.rolled, self.t = zeros(*lead, heads, D), zeros(*lead, heads, D)
        self.rolled_rows = self.rolled.view(B * heads, D)
        self.ssq = zeros(B * heads, 1, 1)
        self.ssq3 = self.ssq.view(*lead, heads, 1)
        self.qkn = zeros(*lead, heads, D) if step.qk_norm else self.t
        self.q = self.qkn.narrow(-2, 0, H)  # [(B,) H, D]
        self.q3 = self.q.view(Hkv, step.g, D) if B == 1 else None  # several rows' queries are copied
        self.kn = self.qkn.narrow(-2, H, Hkv)
        self.att3 = zeros(B * Hkv, step.g, D)
        self.att2 = self.att3.view(B, step.q_dim)
        self.A1, self.B1 = torch.empty_like(step.WA), torch.empty_like(step.WB)
        self.A1_layers, self.B1_layers = self.A1.unbind(0), self.B1.unbind(0)
        self.mlp = {}
        for w in step.layers:
            if w.d_ff not in self.mlp:
                gate_up = zeros(B, 2 * w.d_ff)
                self.mlp[w.d_ff] = (gate_up, gate_up[:, :w.d_ff], gate_up[:, w.d_ff:], zeros(B, w.d_ff))


def _row_views(cache: KVCache, row0: int, B: int):
    """Views of rows row0..row0+B-1 for every layer, derived once per cache and kept in it: keys and
    values [L, B, Hkv, max_len, D], and for the attention matmuls, where rows and key/value heads share
    one batch dimension, keys transposed [L, B * Hkv, D, max_len] and values [L, B * Hkv, max_len, D]."""
    views = cache.step_views.get((row0, B))
    if views is None:
        keys, values = cache.kv[0, :, row0:row0 + B], cache.kv[1, :, row0:row0 + B]
        views = (keys, values, keys.transpose(-1, -2).flatten(1, 2), values.flatten(1, 2))
        cache.step_views[(row0, B)] = views
    return views
