"""Quantized drop-in replacements for `nn.Linear` (weight-only; activations stay floating point).

Each module keeps the stored format of `formats.py` as buffers (that is what a checkpoint holds) and
picks its matmul when first called on a device:

- int8 on CPU: `torch.ops.aten._weight_int8pack_mm` with bf16 activations; on CUDA the int8 weight is
  multiplied after an on-the-fly bf16 conversion.
- int4 on CPU: `torch.ops.aten._weight_int4pack_mm_for_cpu` (bf16 activations) on a repacked copy of
  the weight; on CUDA `_weight_int4pack_mm` when the device supports it.
- NF4 (and any kernel that is missing): dequantize the weight, then a plain `F.linear`.

Activations are cast to bf16 for the kernels (they are ~10x slower with float32) and the result is
cast back to the input dtype.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod

import torch
import torch.nn.functional as F
from torch import nn

from slmkit.quant import formats
from slmkit.quant.kernels import LinearKernel, OpKernel


def _has_op(name: str) -> bool:
    return hasattr(torch.ops.aten, name)


class QuantLinear(nn.Module, metaclass=ABCMeta):
    method = "?"

    def __init__(self, in_features: int, out_features: int, bias: bool):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)
        self._kernel_device = None  # the device the fast kernel's weight copy was prepared for

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, method={self.method}, bias={self.bias is not None}"

    @abstractmethod
    def dequantize(self) -> torch.Tensor:
        """The full-precision weight, [out, in] float32 (each format defines it)."""

    def as_linear_kernel(self) -> LinearKernel | None:
        """This layer as one direct call of a fast torch kernel (see kernels.py), or None when its
        format has none on this device (the decode step then calls the module)."""
        return None

    @classmethod
    def concat(cls, modules: list["QuantLinear"]) -> "QuantLinear | None":
        """One layer computing `modules` (same input) with their outputs concatenated, or None.

        Rows are simply stacked: int8 scales are per output row and int4 groups run along the input.
        """
        if any(type(m) is not cls for m in modules) or len({m.in_features for m in modules}) != 1:
            return None
        extra = {"group_size": modules[0].group_size} if hasattr(modules[0], "group_size") else {}
        if extra and len({m.group_size for m in modules}) != 1:
            return None
        first = modules[0]
        has_bias = any(m.bias is not None for m in modules)
        fused = cls(first.in_features, sum(m.out_features for m in modules), has_bias, **extra)
        for name, _ in first.named_buffers(recurse=False):
            if name != "bias":
                setattr(fused, name, torch.cat([getattr(m, name) for m in modules], 0))
        if has_bias:
            fused.bias = torch.cat([m.bias if m.bias is not None else torch.zeros(m.out_features,
                                                                                 device=first.qweight.device)
                                    for m in modules])
        return fused

    def _dequant_linear(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.dequantize().to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))

    def _finish(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        y = y.view(*x.shape[:-1], self.out_features).to(x.dtype)
        return y if self.bias is None else y + self.bias.to(x.dtype)


class Int8Linear(QuantLinear):
    method = "int8"

    def __init__(self, in_features: int, out_features: int, bias: bool = False):
        super().__init__(in_features, out_features, bias)
        self.register_buffer("qweight", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("scales", torch.ones(out_features))

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "Int8Linear":
        module = cls(linear.in_features, linear.out_features, linear.bias is not None)
        module.qweight, module.scales = formats.quantize_int8(linear.weight)
        if linear.bias is not None:
            module.bias = linear.bias.detach().float().clone()
        return module

    def dequantize(self) -> torch.Tensor:
        return formats.dequantize_int8(self.qweight, self.scales)

    def as_linear_kernel(self) -> LinearKernel | None:
        if self.qweight.device.type != "cpu" or not _has_op("_weight_int8pack_mm"):
            return None
        return OpKernel(torch.ops.aten._weight_int8pack_mm, (self.qweight, self.scales.to(torch.bfloat16)),
                        self.out_features, self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and _has_op("_weight_int8pack_mm"):
            if self._kernel_device != x.device:
                self._scales_bf16 = self.scales.to(torch.bfloat16)
                self._kernel_device = x.device
            y = torch.ops.aten._weight_int8pack_mm(x.reshape(-1, self.in_features).to(torch.bfloat16),
                                                   self.qweight, self._scales_bf16)
            return self._finish(y, x)
        if x.device.type == "cuda":
            y = F.linear(x.to(torch.bfloat16), self.qweight.to(torch.bfloat16)) * self.scales.to(torch.bfloat16)
            return self._finish(y, x)
        return self._dequant_linear(x)


class Int4Linear(QuantLinear):
    method = "int4"

    def __init__(self, in_features: int, out_features: int, bias: bool = False, group_size: int = 64):
        super().__init__(in_features, out_features, bias)
        self.group_size = group_size
        groups = in_features // group_size
        self.register_buffer("qweight", torch.zeros(out_features, in_features // 2, dtype=torch.uint8))
        self.register_buffer("scales", torch.ones(out_features, groups))
        self.register_buffer("zeros", torch.zeros(out_features, groups, dtype=torch.uint8))

    @classmethod
    def from_linear(cls, linear: nn.Linear, group_size: int = 64) -> "Int4Linear":
        module = cls(linear.in_features, linear.out_features, linear.bias is not None, group_size)
        module.qweight, module.scales, module.zeros = formats.quantize_int4(linear.weight, group_size)
        if linear.bias is not None:
            module.bias = linear.bias.detach().float().clone()
        return module

    def extra_repr(self) -> str:
        return super().extra_repr() + f", group_size={self.group_size}"

    def dequantize(self) -> torch.Tensor:
        return formats.dequantize_int4(self.qweight, self.scales, self.zeros)

    def _prepare_kernel(self, device) -> None:
        """Repack for torch's int4 kernels: they compute (q - 8) * scale + offset, so offset = (8 - zero) * scale."""
        scale = self.scales.float()
        offset = (8 - self.zeros.float()) * scale
        self._scales_and_zeros = torch.stack([scale, offset], -1).transpose(0, 1).contiguous().to(torch.bfloat16)
        q = formats.unpack_nibbles(self.qweight).to(torch.int32)
        if device.type == "cpu":
            self._packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 2)
        else:
            # The CUDA packer takes two values per byte, the even element in the HIGH nibble (torchao's layout).
            self._packed = torch.ops.aten._convert_weight_to_int4pack(((q[:, ::2] << 4) | q[:, 1::2]).to(torch.uint8), 2)
        self._kernel_device = device

    def as_linear_kernel(self) -> LinearKernel | None:
        device = self.qweight.device
        if device.type != "cpu" or not _has_op("_weight_int4pack_mm_for_cpu") or self.out_features % 16:
            return None
        if self._kernel_device != device:
            self._prepare_kernel(device)
        return OpKernel(torch.ops.aten._weight_int4pack_mm_for_cpu,
                        (self._packed, self.group_size, self._scales_and_zeros), self.out_features, self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # torch's int4 packers need the output size to be a multiple of 16 (CPU) / 8 (CUDA).
        cpu = x.device.type == "cpu" and _has_op("_weight_int4pack_mm_for_cpu") and self.out_features % 16 == 0
        cuda = x.device.type == "cuda" and _has_op("_weight_int4pack_mm") and self.out_features % 8 == 0
        if cpu or cuda:
            try:
                if self._kernel_device != x.device:
                    self._prepare_kernel(x.device)
                op = torch.ops.aten._weight_int4pack_mm_for_cpu if cpu else torch.ops.aten._weight_int4pack_mm
                y = op(x.reshape(-1, self.in_features).to(torch.bfloat16), self._packed, self.group_size,
                       self._scales_and_zeros)
                return self._finish(y, x)
            except RuntimeError:
                if cpu:
                    raise
        return self._dequant_linear(x)


class NF4Linear(QuantLinear):
    method = "nf4"

    def __init__(self, in_features: int, out_features: int, bias: bool = False):
        super().__init__(in_features, out_features, bias)
        n_blocks = in_features * out_features // formats.NF4_BLOCK
        self.register_buffer("qweight", torch.zeros(in_features * out_features // 2, dtype=torch.uint8))
        self.register_buffer("absmax_q", torch.zeros(n_blocks, dtype=torch.int8))
        self.register_buffer("scale2", torch.ones(-(-n_blocks // formats.NF4_SCALE_BLOCK)))
        self.register_buffer("offset", torch.zeros(()))

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "NF4Linear":
        module = cls(linear.in_features, linear.out_features, linear.bias is not None)
        t = formats.quantize_nf4(linear.weight)
        module.qweight, module.absmax_q, module.scale2, module.offset = t.codes, t.absmax_q, t.scale2, t.offset
        if linear.bias is not None:
            module.bias = linear.bias.detach().float().clone()
        return module

    def dequantize(self) -> torch.Tensor:
        t = formats.NF4Tensor(self.qweight, self.absmax_q, self.scale2, self.offset,
                              (self.out_features, self.in_features))
        return formats.dequantize_nf4(t)

    @classmethod
    def concat(cls, modules: list[QuantLinear]) -> None:
        return None  # double-quantized blocks of flattened codes do not stack row-wise

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._dequant_linear(x)


METHODS = {"int8": Int8Linear, "int4": Int4Linear, "nf4": NF4Linear}
