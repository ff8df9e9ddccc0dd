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
(`_FastDecode`) for RMSNorm + SwiGLU + RoPE decoders with plain Linear layers (Llama, Qwen3): about
25 torch calls per layer, all into preallocated buffers with precomputed views, no per-step Python
objects besides a few views, no masks. Per step, one multiply builds every layer's QK-norm weight x
RoPE cos/sin product, so QK-norm + RoPE cost 7 calls per layer for q and k together. One token for
several rows of different lengths (batched decoding, continuous batching) takes the same arithmetic
for B rows (`_FastDecode.step_rows`): per-row positions, one indexed key/value write and one masked
attention per layer.

The runner snapshots weights when built: build a new one after changing the model's weights. It keeps
per-runner scratch buffers, so one runner must not be used from two threads at once.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from slmkit.errors import SlmError
from slmkit.infer.cache import SlotCache
from slmkit.model.mlp import SwiGLU
from slmkit.model.norms import RMSNorm
from slmkit.model.positions import sinusoidal_embedding

HEAD_COPY_LIMIT = 256 * 2**20  # bytes: above this the head keeps the model's [vocab, d] weight (no copy)


def _matvec_layout(weight: torch.Tensor, copy_limit: int | None = None) -> torch.Tensor:
    """The [in, out] matrix to multiply rows by: a contiguous transposed copy when out >= in (faster
    matrix-vector products on CPU), else the weight's own transposed view (no copy)."""
    out_f, in_f = weight.shape
    if out_f >= in_f and weight.device.type == "cpu" and (
            copy_limit is None or weight.numel() * weight.element_size() <= copy_limit):
        return weight.detach().t().contiguous()
    return weight.detach().t()


def _fuse(linears: list[nn.Module]) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """One ([in, out] matrix, bias) for several plain nn.Linear layers that read the same input, else None."""
    if not all(type(m) is nn.Linear for m in linears):
        return None
    weight = torch.cat([m.weight.detach() for m in linears], 0)
    biases = [m.bias for m in linears]
    bias = None
    if not all(b is None for b in biases):
        bias = torch.cat([b.detach() if b is not None else torch.zeros(m.out_features, dtype=weight.dtype,
                                                                       device=weight.device)
                          for b, m in zip(biases, linears)])
    return _matvec_layout(weight), bias


class _Layer:
    """Per-block references and fused weights."""

    def __init__(self, block):
        attn = block.attn
        self.attn_norm, self.mlp_norm = block.attn_norm, block.mlp_norm
        self.q_norm, self.k_norm = attn.q_norm, attn.k_norm
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj
        self.qkv = _fuse([attn.q_proj, attn.k_proj, attn.v_proj])  # ([in, out], bias)
        self.mlp = block.mlp
        self.gate_up = _fuse([block.mlp.gate_proj, block.mlp.up_proj]) if isinstance(block.mlp, SwiGLU) else None
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
        self.fast = _FastDecode(self) if fast and _FastDecode.supports(self) else None

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


class _FastDecode:
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
        self.head = _linear(model.head, HEAD_COPY_LIMIT)  # [d, vocab] matrix, or a (quantized) module
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
                *(layer.qkv or (_fuse_quantized([layer.q_proj, layer.k_proj, layer.v_proj]), None)),
                self.A[i], self.B[i],
                _linear(layer.out_proj), _bias(layer.out_proj),
                layer.mlp_norm.weight.detach(), eps(layer.mlp_norm.eps),
                *(layer.gate_up or (_fuse_quantized([layer.mlp.gate_proj, layer.mlp.up_proj]), None)),
                _linear(layer.mlp.down_proj), _bias(layer.mlp.down_proj),
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
            if type(wo) is torch.Tensor:
                x.addmm_(att2, wo)
                if bo is not None:
                    x.add_(bo)
            else:
                x.add_(wo(att2))
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
            if type(wd) is torch.Tensor:
                x.addmm_(a, wd)
                if bd is not None:
                    x.add_(bd)
            else:
                x.add_(wd(a))
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
    """RMSNorm of the rows of x [B, d] (fp32), as _FastDecode._norm computes it for one row."""
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


def _linear(module: nn.Module, copy_limit: int | None = None):
    """A plain fp32 nn.Linear as its [in, out] matrix; any other layer (quantized) as the module itself."""
    if type(module) is nn.Linear and module.weight.dtype == torch.float32:
        return _matvec_layout(module.weight, copy_limit)
    return _Kernel.wrap(module)


class _Kernel:
    """An int8 / int4 layer as a direct call of torch's CPU kernel (bf16 activations), skipping the
    module's reshapes and casts; returns bf16 (the caller's copy_/add_ converts), fp32 with a bias."""

    __slots__ = ("op", "args", "bias")

    @staticmethod
    def wrap(module: nn.Module):
        from slmkit.quant.linear import Int4Linear, Int8Linear, _has_op

        device = getattr(module, "qweight", torch.empty(0)).device
        if device.type != "cpu":
            return module
        kernel = _Kernel()
        kernel.bias = module.bias
        if type(module) is Int8Linear and _has_op("_weight_int8pack_mm"):
            kernel.op = torch.ops.aten._weight_int8pack_mm
            kernel.args = (module.qweight, module.scales.to(torch.bfloat16))
            return kernel
        if type(module) is Int4Linear and _has_op("_weight_int4pack_mm_for_cpu") and module.out_features % 16 == 0:
            module._prepare_kernel(device)
            kernel.op = torch.ops.aten._weight_int4pack_mm_for_cpu
            kernel.args = (module._packed, module.group_size, module._scales_and_zeros)
            return kernel
        return module

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = self.op(x.to(torch.bfloat16), *self.args)
        return y if self.bias is None else y.float() + self.bias


def _fuse_quantized(modules: list[nn.Module]):
    """One int8 / int4 layer for several that read the same input (rows concatenated: the int8 scales are
    per output row and the int4 groups run along the input), else the modules as a tuple."""
    from slmkit.quant.linear import Int4Linear, Int8Linear

    kind = type(modules[0])
    if kind not in (Int8Linear, Int4Linear) or any(type(m) is not kind for m in modules):
        return tuple(modules)
    if kind is Int4Linear and len({m.group_size for m in modules}) != 1:
        return tuple(modules)
    has_bias = any(m.bias is not None for m in modules)
    out = sum(m.out_features for m in modules)
    args = (modules[0].group_size,) if kind is Int4Linear else ()
    fused = kind(modules[0].in_features, out, has_bias, *args)
    for name in ("qweight", "scales", "zeros"):
        if hasattr(modules[0], name):
            setattr(fused, name, torch.cat([getattr(m, name) for m in modules], 0))
    if has_bias:
        fused.bias = torch.cat([m.bias if m.bias is not None else torch.zeros(m.out_features) for m in modules])
    return _Kernel.wrap(fused.to(modules[0].qweight.device))


def _bias(module: nn.Module):
    """The bias the fused matmul path adds (None for modules that are called, which add their own)."""
    if type(module) is nn.Linear and module.weight.dtype == torch.float32 and module.bias is not None:
        return module.bias.detach()
    return None
