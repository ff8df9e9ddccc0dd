"""`LinearKernel`: one small interface for the matmuls of a linear layer (or several fused ones) on the
decode path, whatever stores the weight: a float matrix, int8 / int4 codes, or any other module.

    kernel = linear_kernel([attn.q_proj, attn.k_proj, attn.v_proj])   # one fused q/k/v matmul
    y = kernel.matmul(h)              # [rows, in] -> [rows, out], float32 (into `out=` when given)
    kernel.add_matmul_(x, a)          # x += a @ W^T + b in place: the residual add fused in

Kernels are for inference (they read detached weights); `linear_kernel` picks, for modules that all read
the same input:

- plain float32 `nn.Linear`s: `DenseKernel`, their weights concatenated into one [in, out] matrix (the
  layout CPU matrix-vector kernels read fastest when out >= in);
- layers of one class that offer `concat` (several layers as one) and `as_linear_kernel()` (their
  fastest form, or None): int8 / int4 give torch's CPU kernels with bf16 activations on the
  concatenated codes (`slmkit.quant.linear`); a future wrapped projection can offer the same;
- wrappers that offer `inference_weight()` -> (float32 weight, bias) or None: read as plain layers (a LoRA
  projection on a float32 base gives its merged weight, a snapshot: the step is rebuilt after an update);
- anything else that maps [.., in] -> [.., out] (NF4, a LoRA projection on a quantized base, a CUDA quantized
  layer): `ModuleKernel`, which calls the modules as they are — correct, just not fused.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

HEAD_COPY_LIMIT = 256 * 2**20  # bytes: above this the output head keeps the model's [vocab, d] weight (no copy)


class LinearKernel(ABC):
    out_features: int

    @abstractmethod
    def matmul(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """x [rows, in] -> x @ W^T + b, [rows, out] float32 (written into `out` when given)."""

    def add_matmul_(self, residual: torch.Tensor, x: torch.Tensor) -> None:
        """residual [rows, out] += x @ W^T + b, in place."""
        residual.add_(self.matmul(x))


class DenseKernel(LinearKernel):
    """Float weights as one [in, out] matrix (several layers' rows concatenated), plus an optional bias."""

    def __init__(self, linears: list[nn.Linear], copy_limit: int | None = None):
        self._build([(m.weight.detach(), m.bias) for m in linears], copy_limit)

    @classmethod
    def from_weights(cls, pairs: list[tuple[torch.Tensor, torch.Tensor | None]],
                     copy_limit: int | None = None) -> "DenseKernel":
        """(weight [out, in], bias or None) per layer: layers that are not nn.Linear but read as one."""
        kernel = cls.__new__(cls)
        kernel._build(pairs, copy_limit)
        return kernel

    def _build(self, pairs, copy_limit) -> None:
        weights = [w.detach() for w, _ in pairs]
        weight = weights[0] if len(weights) == 1 else torch.cat(weights)
        self.weight = matvec_layout(weight, copy_limit)
        self.out_features = weight.shape[0]
        self.bias = None
        if any(b is not None for _, b in pairs):
            self.bias = torch.cat([b.detach() if b is not None
                                   else torch.zeros(w.shape[0], dtype=weight.dtype, device=weight.device)
                                   for w, b in pairs])

    def matmul(self, x, out=None):
        if self.bias is None:
            return torch.mm(x, self.weight, out=out)
        return torch.addmm(self.bias, x, self.weight, out=out)

    def add_matmul_(self, residual, x):
        residual.addmm_(x, self.weight)
        if self.bias is not None:
            residual.add_(self.bias)


class OpKernel(LinearKernel):
    """A quantized format's matmul as one direct call `op(x_bf16, *args)` of a torch kernel (what
    `QuantLinear.kernel` returns): no reshapes or casts beyond the input's, bias added in float32."""

    def __init__(self, op, args: tuple, out_features: int, bias: torch.Tensor | None):
        self.op, self.args, self.out_features, self.bias = op, args, out_features, bias

    def matmul(self, x, out=None):
        y = self.op(x.to(torch.bfloat16), *self.args)
        if out is None:
            y = y.float()
            return y if self.bias is None else y.add_(self.bias)
        out.copy_(y)
        return out if self.bias is None else out.add_(self.bias)

    def add_matmul_(self, residual, x):
        residual.add_(self.op(x.to(torch.bfloat16), *self.args))
        if self.bias is not None:
            residual.add_(self.bias)


class ModuleKernel(LinearKernel):
    """Any modules mapping [.., in] -> [.., out], called as they are; outputs concatenated."""

    def __init__(self, modules: list[nn.Module]):
        self.modules = list(modules)
        self.sizes = [int(m.out_features) for m in self.modules]
        self.out_features = sum(self.sizes)

    def matmul(self, x, out=None):
        if out is None:
            parts = [m(x).float() for m in self.modules]
            return parts[0] if len(parts) == 1 else torch.cat(parts, -1)
        start = 0
        for size, module in zip(self.sizes, self.modules):
            out.narrow(-1, start, size).copy_(module(x))
            start += size
        return out


def matvec_layout(weight: torch.Tensor, copy_limit: int | None = None) -> torch.Tensor:
    """The [in, out] matrix to multiply rows by: a contiguous transposed copy when out >= in (faster
    matrix-vector products on CPU), else the weight's own transposed view (no copy)."""
    out_f, in_f = weight.shape
    if out_f >= in_f and weight.device.type == "cpu" and (
            copy_limit is None or weight.numel() * weight.element_size() <= copy_limit):
        return weight.detach().t().contiguous()
    return weight.detach().t()


def dense_form(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """(weight [out, in], bias) of a layer the decode step may read as a float32 matrix, or None: a plain
    float32 nn.Linear, or a wrapper that offers `inference_weight()` (a LoRA layer: its update folded in)."""
    if type(module) is nn.Linear:
        return (module.weight, module.bias) if module.weight.dtype == torch.float32 else None
    offer = getattr(module, "inference_weight", None)
    return offer() if offer is not None else None


def linear_kernel(modules: list[nn.Module], copy_limit: int | None = None) -> LinearKernel:
    """The fastest kernel for `modules` (linear layers reading the same input), outputs concatenated."""
    dense = [dense_form(m) for m in modules]
    if all(d is not None and d[0].dtype == torch.float32 for d in dense):
        return DenseKernel.from_weights(dense, copy_limit)
    kinds = {type(m) for m in modules}
    kind = next(iter(kinds))
    one = modules[0] if len(modules) == 1 else None
    if one is None and len(kinds) == 1 and hasattr(kind, "concat"):
        one = kind.concat(modules)  # None when these layers cannot be joined (e.g. different group sizes)
    kernel = one.as_linear_kernel() if one is not None and hasattr(one, "as_linear_kernel") else None
    return kernel if kernel is not None else ModuleKernel(modules)
