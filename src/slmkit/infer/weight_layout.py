"""Weight layouts for the generation runner: fp32 matrices in the layout CPU matrix-vector kernels read
fastest, fused q/k/v and gate/up matrices, and int8/int4 layers as direct calls of torch's CPU kernels."""

from __future__ import annotations

import torch
from torch import nn

HEAD_COPY_LIMIT = 256 * 2**20  # bytes: above this the head keeps the model's [vocab, d] weight (no copy)


def matvec_layout(weight: torch.Tensor, copy_limit: int | None = None) -> torch.Tensor:
    """The [in, out] matrix to multiply rows by: a contiguous transposed copy when out >= in (faster
    matrix-vector products on CPU), else the weight's own transposed view (no copy)."""
    out_f, in_f = weight.shape
    if out_f >= in_f and weight.device.type == "cpu" and (
            copy_limit is None or weight.numel() * weight.element_size() <= copy_limit):
        return weight.detach().t().contiguous()
    return weight.detach().t()


def fuse_linears(linears: list[nn.Module]) -> tuple[torch.Tensor, torch.Tensor | None] | None:
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
    return matvec_layout(weight), bias


def as_matmul(module: nn.Module, copy_limit: int | None = None):
    """A plain fp32 nn.Linear as its [in, out] matrix; any other layer (quantized) as the module itself."""
    if type(module) is nn.Linear and module.weight.dtype == torch.float32:
        return matvec_layout(module.weight, copy_limit)
    return QuantKernel.wrap(module)


class QuantKernel:
    """An int8 / int4 layer as a direct call of torch's CPU kernel (bf16 activations), skipping the
    module's reshapes and casts; returns bf16 (the caller's copy_/add_ converts), fp32 with a bias."""

    __slots__ = ("op", "args", "bias")

    @staticmethod
    def wrap(module: nn.Module):
        from slmkit.quant.linear import Int4Linear, Int8Linear, _has_op

        device = getattr(module, "qweight", torch.empty(0)).device
        if device.type != "cpu":
            return module
        kernel = QuantKernel()
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


def fuse_quantized(modules: list[nn.Module]):
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
    return QuantKernel.wrap(fused.to(modules[0].qweight.device))


def fused_bias(module: nn.Module):
    """The bias the fused matmul path adds (None for modules that are called, which add their own)."""
    if type(module) is nn.Linear and module.weight.dtype == torch.float32 and module.bias is not None:
        return module.bias.detach()
    return None
