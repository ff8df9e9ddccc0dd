"""The position-wise feed-forward networks: SwiGLU (Llama, Qwen), GELU (GPT-2) and ReLU² (Primer; the
speedrun recipes' MLP: two matrices instead of SwiGLU's three, so a wider hidden layer for the same size)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slmkit.model.config import ModelConfig


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)): [batch, seq, d_model] -> [batch, seq, d_model]."""

    def __init__(self, d_model: int, d_ff: int, bias: bool = False):
        super().__init__()
        self.gate_proj = nn.Linear(d_model, d_ff, bias=bias)
        self.up_proj = nn.Linear(d_model, d_ff, bias=bias)
        self.down_proj = nn.Linear(d_ff, d_model, bias=bias)
        self.down_proj.is_residual_projection = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class GeluMLP(nn.Module):
    """down(gelu(up(x))) with GPT-2's tanh-approximated GELU ("gelu_new")."""

    def __init__(self, d_model: int, d_ff: int, bias: bool = True):
        super().__init__()
        self.up_proj = nn.Linear(d_model, d_ff, bias=bias)
        self.down_proj = nn.Linear(d_ff, d_model, bias=bias)
        self.down_proj.is_residual_projection = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.gelu(self.up_proj(x), approximate="tanh"))


class ReluSquaredMLP(nn.Module):
    """down(relu(up(x))^2) (So et al., Primer, 2021)."""

    def __init__(self, d_model: int, d_ff: int, bias: bool = False):
        super().__init__()
        self.up_proj = nn.Linear(d_model, d_ff, bias=bias)
        self.down_proj = nn.Linear(d_ff, d_model, bias=bias)
        self.down_proj.is_residual_projection = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.relu(self.up_proj(x)).square())


def make_mlp(config: ModelConfig, d_ff: int | None = None) -> nn.Module:
    d_ff = d_ff or config.d_ff
    if config.mlp == "swiglu":
        return SwiGLU(config.d_model, d_ff, config.mlp_bias)
    if config.mlp == "relu2":
        return ReluSquaredMLP(config.d_model, d_ff, config.mlp_bias)
    return GeluMLP(config.d_model, d_ff, config.mlp_bias)
