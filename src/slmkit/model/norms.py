"""Normalisation layers: RMSNorm (Llama, Qwen) and LayerNorm (GPT-2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x^2) + eps) * weight, over the last dimension.

    The statistics are taken in float32 even for bf16/fp16 inputs (as Llama and Qwen do), because the
    mean of squares loses precision quickly in 16-bit formats.
    """

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [..., dim] -> [..., dim]"""
        if x.dtype == torch.float32 and self.weight.dtype == torch.float32:
            # the same formula as below, in torch's fused kernel (fewer passes over memory in backward)
            return F.rms_norm(x, self.weight.shape, self.weight, self.eps)
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


def make_norm(kind: str, dim: int, eps: float) -> nn.Module:
    """The config's norm: 'rmsnorm' or 'layernorm' (LayerNorm always has a bias, as in GPT-2)."""
    if kind == "rmsnorm":
        return RMSNorm(dim, eps)
    if kind == "layernorm":
        return nn.LayerNorm(dim, eps=eps)
    raise ValueError(f"norm must be rmsnorm or layernorm, got {kind!r}")
