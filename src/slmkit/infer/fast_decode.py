"""`FastDecode`: the runner's one-token decode path for RMSNorm + SwiGLU + RoPE decoders (see runner.py)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from slmkit.infer.cache import SlotCache
from slmkit.infer.weight_layout import HEAD_COPY_LIMIT, as_matmul, fuse_quantized, fused_bias
from slmkit.model.mlp import SwiGLU
from slmkit.model.norms import RMSNorm

if TYPE_CHECKING:
    from slmkit.infer.runner import ModelRunner


class FastDecode:
    """One token for one cache row, for RMSNorm + SwiGLU + RoPE decoders with plain Linear layers.

    The same arithmetic as the general path (RMSNorm as x * rsqrt(mean(x^2) + eps) * w, QK-norm then
    RoPE, softmax(q k^T / sqrt(d)) v), regrouped into fewer torch calls:

    - RMSNorm: dot(x, x), eps + ss/d, rsqrt, two multiplies (torch's rms_norm is ~6 calls on CPU);
    - QK-norm + RoPE for all q and k heads at once, as rows of one [n_heads + n_kv_heads, head_dim]
      view: rope(n * w) = n * (w * cos) + roll(n) * (roll(w) * sign * sin), where n = q * r and r is a
      per-head scalar, so  out = (q * A + roll(q) * B) * r  with A, B built for every layer by one
      multiply per step; the query rows of A and B also carry 1/sqrt(head_dim);
    - attention: bmm(q, K^T) -> softmax -> bmm(., V) over views of the valid cache prefix (no mask);
    - residual adds fused into the output projections (addmm_ into the residual buffer).
    """

    @staticmethod
    def supports(runner: ModelRunner) -> bool:
        c, model = runner.config, runner.model
        if runner.dtype != torch.float32 or runner.cos is None or model.pos_embed is not None:
            return False
        if c.norm != "rmsnorm" or type(model.final_norm) is not RMSNorm:
            return False
        if type(model.head) is nn.Linear and (model.head.bias is not None or model.head.weight.dtype != torch.float32):
            return False
        for layer in runner.layers:
            if not isinstance(layer.mlp, SwiGLU) or type(layer.attn_norm) is not RMSNorm:
                return False
            if type(layer.mlp_norm) is not RMSNorm or (layer.q_norm is not None and type(layer.q_norm) is not RMSNorm):
                return False
            if layer.qkv is not None and layer.qkv[0].dtype != torch.float32:
                return False
        return runner.n_heads % runner.n_kv_heads == 0 and runner.head_dim % 2 == 0

    def __init__(self, runner: ModelRunner):
        self.runner = runner
        model, c = runner.model, runner.config
        H, Hkv, D = runner.n_heads, runner.n_kv_heads, runner.head_dim
        d, dev, dt = c.d_model, runner.device, runner.dtype
        self.H, self.Hkv, self.D, self.d, self.g = H, Hkv, D, d, H // Hkv
        self.q_dim, self.kv_dim = runner.q_dim, runner.kv_dim
        half = D // 2
        rows = H + Hkv
        zeros = lambda *shape: torch.zeros(shape, dtype=dt, device=dev)  # noqa: E731

        # Per-layer QK-norm weights (ones without QK-norm), query rows scaled by SDPA's 1/sqrt(head_dim).
        scale = 1.0 / math.sqrt(D)
        wa = []
        for layer in runner.layers:
            if layer.q_norm is not None:
                wq, wk = layer.q_norm.weight.detach(), layer.k_norm.weight.detach()
            else:
                wq = wk = torch.ones(D, dtype=dt, device=dev)
            wa.append(torch.cat([(wq * scale).expand(H, D), wk.expand(Hkv, D)], 0))
        self.WA = torch.stack(wa)  # [L, H + Hkv, D]
        self.WB = torch.roll(self.WA, half, -1)
        self.qk_norm = runner.layers[0].q_norm is not None
        eps = lambda value: torch.tensor(value, dtype=dt, device=dev)  # noqa: E731
        self.qk_eps = eps(runner.layers[0].q_norm.eps if self.qk_norm else 0.0).expand(rows, 1, 1)
        sign = torch.cat([-torch.ones(half, dtype=dt, device=dev), torch.ones(half, dtype=dt, device=dev)])
        self.cos, self.sin = runner.cos, runner.sin * sign  # [max_seq_len, D]
        self.A, self.B = torch.empty_like(self.WA), torch.empty_like(self.WA)

        self.embed = model.embed.weight.detach()
        self.head = as_matmul(model.head, HEAD_COPY_LIMIT)  # [d, vocab] matrix, or a (quantized) module
        self.final_w, self.final_eps = model.final_norm.weight.detach(), eps(model.final_norm.eps)

        # Scratch buffers and their views (made once, reused every step).
        self.ids = torch.zeros(1, dtype=torch.long, device=dev)
        self.x = zeros(1, d)
        self.x1 = self.x.view(d)
        self.h = zeros(1, d)
        self.x_col = self.x.view(d, 1)
        self.ss = zeros(1, 1)
        self.inv_d = 1.0 / d
        self.inv_D = 1.0 / D
        qkv_out = self.q_dim + 2 * self.kv_dim
        self.qkv = zeros(1, qkv_out)
        qk = self.qkv[0, :self.q_dim + self.kv_dim].view(rows, D)
        self.qk = qk
        self.qk_a, self.qk_b = qk.view(rows, 1, D), qk.view(rows, D, 1)
        self.v = self.qkv[0, self.q_dim + self.kv_dim:].view(Hkv, D)
        self.qkv_parts = (self.qkv[:, :self.q_dim], self.qkv[:, self.q_dim:self.q_dim + self.kv_dim],
                          self.qkv[:, self.q_dim + self.kv_dim:])  # outputs of unfused (quantized) layers
        self.t = zeros(rows, D)
        self.rolled = zeros(rows, D)
        self.roll_index = torch.roll(torch.arange(D, device=dev), half)
        self.ssq = zeros(rows, 1, 1)
        self.ssq2 = self.ssq.view(rows, 1)
        self.qkn = zeros(rows, D) if self.qk_norm else self.t
        self.q3 = self.qkn[:H].view(Hkv, self.g, D)
        self.kn = self.qkn[H:]
        self.att = zeros(Hkv, self.g, D)
        self.att2 = self.att.view(1, self.q_dim)

        self.layers = []
        mlp_buffers = {}  # d_ff -> (gate_up output, gate view, up view, product)
        for i, layer in enumerate(runner.layers):
            d_ff = layer.d_ff
            if d_ff not in mlp_buffers:
                gu = zeros(1, 2 * d_ff)
                mlp_buffers[d_ff] = (gu, gu[:, :d_ff], gu[:, d_ff:], zeros(1, d_ff))
            self.layers.append((
                layer.attn_norm.weight.detach(), eps(layer.attn_norm.eps),
                *(layer.qkv or (fuse_quantized([layer.q_proj, layer.k_proj, layer.v_proj]), None)),
                self.A[i], self.B[i],
                as_matmul(layer.out_proj), fused_bias(layer.out_proj),
                layer.mlp_norm.weight.detach(), eps(layer.mlp_norm.eps),
                *(layer.gate_up or (fuse_quantized([layer.mlp.gate_proj, layer.mlp.up_proj]), None)),
                as_matmul(layer.mlp.down_proj), fused_bias(layer.mlp.down_proj),
                mlp_buffers[d_ff],
            ))

    def _row_views(self, cache: SlotCache, row: int):
        views = cache.fast_state.get(row)
        if views is None:
            keys, values = cache.kv[0, :, row], cache.kv[1, :, row]  # [L, Hkv, max_len, D]
            views = cache.fast_state[row] = (keys, keys.transpose(-1, -2), values)
        return views

    def _norm(self, w, eps, out):
        # out = x * rsqrt(mean(x^2) + eps) * w  (RMSNorm, fp32): eps + x.x / d in one addmm
        ss = self.ss
        torch.addmm(eps, self.x, self.x_col, alpha=self.inv_d, out=ss)
        ss.rsqrt_()
        torch.mul(self.x, ss, out=out)
        out.mul_(w)

    def step(self, token, cache: SlotCache, row: int) -> torch.Tensor:
        p = cache.lengths[row]
        if p >= cache.max_len:
            cache.check_room(row, 1)
        keys, keys_t, values = self._row_views(cache, row)
        n = p + 1
        k_all = keys_t.narrow(3, 0, n).unbind(0)  # [Hkv, D, n] per layer
        v_all = values.narrow(2, 0, n).unbind(0)  # [Hkv, n, D] per layer
        k_slot = keys.select(2, p).unbind(0)  # [Hkv, D] per layer: where this token's key goes
        v_slot = values.select(2, p).unbind(0)
        torch.mul(self.WA, self.cos[p], out=self.A)
        torch.mul(self.WB, self.sin[p], out=self.B)
        x, h = self.x, self.h
        if isinstance(token, int):
            self.ids.fill_(token)
            torch.index_select(self.embed, 0, self.ids, out=x)
        else:
            torch.index_select(self.embed, 0, token.reshape(1), out=x)
        qk, t, qkn, att, att2 = self.qk, self.t, self.qkn, self.att, self.att2
        for i, (w1, eps1, qkv_w, qkv_b, A, B, wo, bo, w2, eps2, gu_w, gu_b, wd, bd, mlp) in enumerate(self.layers):
            self._norm(w1, eps1, h)
            if type(qkv_w) is tuple:  # separate (quantized) layers
                for part, proj in zip(self.qkv_parts, qkv_w):
                    part.copy_(proj(h))
            elif type(qkv_w) is not torch.Tensor:  # one fused quantized layer
                self.qkv.copy_(qkv_w(h))
            elif qkv_b is None:
                torch.mm(h, qkv_w, out=self.qkv)
            else:
                torch.addmm(qkv_b, h, qkv_w, out=self.qkv)
            rolled = torch.index_select(qk, 1, self.roll_index, out=self.rolled)  # halves swapped
            torch.mul(qk, A, out=t)
            t.addcmul_(rolled, B)
            if self.qk_norm:
                ssq = self.ssq
                torch.baddbmm(self.qk_eps, self.qk_a, self.qk_b, alpha=self.inv_D, out=ssq)
                ssq.rsqrt_()
                torch.mul(t, self.ssq2, out=qkn)
            k_slot[i].copy_(self.kn)
            v_slot[i].copy_(self.v)
            scores = torch.bmm(self.q3, k_all[i])  # [Hkv, group, n]
            torch.bmm(torch.softmax(scores, -1), v_all[i], out=att)
            _add_projection_(x, att2, wo, bo)
            self._norm(w2, eps2, h)
            gu, gate, up, a = mlp
            if type(gu_w) is tuple:
                gate.copy_(gu_w[0](h))
                up.copy_(gu_w[1](h))
            elif type(gu_w) is not torch.Tensor:
                gu.copy_(gu_w(h))
            elif gu_b is None:
                torch.mm(h, gu_w, out=gu)
            else:
                torch.addmm(gu_b, h, gu_w, out=gu)
            F.silu(gate, inplace=True)
            torch.mul(gate, up, out=a)
            _add_projection_(x, a, wd, bd)
        cache.lengths[row] = n
        self._norm(self.final_w, self.final_eps, h)
        if type(self.head) is torch.Tensor:
            return torch.mm(h, self.head)
        return self.head(h).float()


    def step_rows(self, ids: torch.Tensor, cache: SlotCache, row0: int) -> torch.Tensor:
        """One token for each of the B cache rows row0..row0+B-1 (ids [B, 1]), each at its own position;
        float32 logits [B, vocab].

        The single-row arithmetic for B rows at once: the matmuls take [B, d] inputs, QK-norm + RoPE use
        per-row cos/sin (one multiply builds every layer's A and B for all rows), each row's key/value
        goes to its own slot with one indexed write per layer, and attention is one batched matmul ->
        masked softmax -> matmul over the longest row's prefix (an additive mask hides the slots past
        each row's length). About 30 torch calls per layer whatever B is.
        """
        B = ids.shape[0]
        lens = cache.lengths[row0:row0 + B]
        for b in range(B):
            cache.check_room(row0 + b, 1)
        dev, dt = self.runner.device, self.runner.dtype
        n = max(lens) + 1
        pos = torch.tensor(lens, device=dev)
        rows_t = torch.arange(row0, row0 + B, device=dev)
        H, Hkv, D, g = self.H, self.Hkv, self.D, self.g
        qk_rows = H + Hkv
        A = self.WA[:, None] * self.cos[pos][None, :, None]  # [L, B, H + Hkv, D]
        Bm = self.WB[:, None] * self.sin[pos][None, :, None]
        mask = torch.zeros(B, n, dtype=dt, device=dev)
        mask.masked_fill_(cache.slots[:n][None] > pos[:, None], float("-inf"))
        mask = mask[:, None, None]  # [B, 1, 1, n]
        x = torch.index_select(self.embed, 0, ids.reshape(B))
        split = self.q_dim + self.kv_dim
        for i, (w1, eps1, qkv_w, qkv_b, _, _, wo, bo, w2, eps2, gu_w, gu_b, wd, bd, mlp) in enumerate(self.layers):
            qkv = _project(_rms(x, w1, eps1, self.inv_d), qkv_w, qkv_b)
            qk = qkv[:, :split].view(B, qk_rows, D)
            t = qk * A[i]
            t.addcmul_(torch.index_select(qk, 2, self.roll_index), Bm[i])
            if self.qk_norm:
                ssq = torch.baddbmm(self.qk_eps[:1], qk.reshape(B * qk_rows, 1, D), qk.reshape(B * qk_rows, D, 1),
                                    alpha=self.inv_D)
                t.mul_(ssq.rsqrt_().view(B, qk_rows, 1))
            keys, values = cache.keys[i], cache.values[i]  # [rows, Hkv, max_len, D]
            keys[rows_t, :, pos] = t[:, H:]
            values[rows_t, :, pos] = qkv[:, split:].view(B, Hkv, D)
            scores = torch.matmul(t[:, :H].view(B, Hkv, g, D), keys[row0:row0 + B, :, :n].transpose(-1, -2))
            scores.add_(mask)
            att = torch.matmul(torch.softmax(scores, -1), values[row0:row0 + B, :, :n]).view(B, self.q_dim)
            x = _residual(x, att, wo, bo)
            d_ff = mlp[3].shape[1]
            gate, up = _project(_rms(x, w2, eps2, self.inv_d), gu_w, gu_b).split((d_ff, d_ff), -1)
            x = _residual(x, F.silu(gate) * up, wd, bd)
        for b in range(B):
            cache.lengths[row0 + b] += 1
        h = _rms(x, self.final_w, self.final_eps, self.inv_d)
        if type(self.head) is torch.Tensor:
            return torch.mm(h, self.head)
        return self.head(h).float()


def _rms(x: torch.Tensor, w: torch.Tensor, eps: torch.Tensor, inv_d: float) -> torch.Tensor:
    """RMSNorm of the rows of x [B, d] (fp32), as FastDecode._norm computes it for one row."""
    ss = (x * x).sum(-1, keepdim=True).mul_(inv_d).add_(eps)
    return (x * ss.rsqrt_()).mul_(w)


def _project(h: torch.Tensor, w, b) -> torch.Tensor:
    """h @ w for a fused [in, out] matrix (plus bias), a fused quantized kernel, or separate modules."""
    if type(w) is torch.Tensor:
        return torch.mm(h, w) if b is None else torch.addmm(b, h, w)
    if type(w) is tuple:
        return torch.cat([m(h).float() for m in w], -1)
    return w(h).float()


def _residual(x: torch.Tensor, a: torch.Tensor, w, b) -> torch.Tensor:
    """x + a @ w (+ b), or x + module(a)."""
    if type(w) is torch.Tensor:
        x = torch.addmm(x, a, w)
        return x if b is None else x.add_(b)
    return x + w(a)


def _add_projection_(x: torch.Tensor, a: torch.Tensor, w, b) -> None:
    """x += a @ w (+ b) in place, or x += module(a): the residual add fused into the projection."""
    if type(w) is torch.Tensor:
        x.addmm_(a, w)
        if b is not None:
            x.add_(b)
    else:
        x.add_(w(a))
