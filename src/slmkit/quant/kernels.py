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
- anything else that maps [.., in] -> [.., out] (NF4, a LoRA-wrapped projection, a CUDA quantized
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
        weight = linears[0].weight.detach() if len(linears) == 1 else torch.cat([m.weight.detach() for m in linears])
        self.weight = matvec_layout(weight, copy_limit)
        self.out_features = weight.shape[0]
        self.bias = None
        if any(m.bias is not None for m in linears):
            self.bias = torch.cat([m.bias.detach() if m.bias is not None
                                   else torch.zeros(m.out_features, dtype=weight.dtype, device=weight.device)
                                   for m in linears])

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


def linear_kernel(modules: list[nn.Module], copy_limit: int | None = None) -> LinearKernel:
    """The fastest kernel for `modules` (linear layers reading the same input), outputs concatenated."""
    kinds = {type(m) for m in modules}
    if kinds == {nn.Linear} and all(m.weight.dtype == torch.float32 for m in modules):
        return DenseKernel(modules, copy_limit)
    kind = next(iter(kinds))
    one = modules[0] if len(modules) == 1 else None
    if one is None and len(kinds) == 1 and hasattr(kind, "concat"):
        one = kind.concat(modules)  # None when these layers cannot be joined (e.g. different group sizes)
    kernel = one.as_linear_kernel() if one is not None and hasattr(one, "as_linear_kernel") else None
    return kernel if kernel is not None else ModuleKernel(modules)
