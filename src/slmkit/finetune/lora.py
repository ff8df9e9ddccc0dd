"""LoRA, rsLoRA and DoRA as in-place wrappers of a model's projections.

    from slmkit.finetune.lora import LoraConfig, add_lora, merge_lora
    names = add_lora(model, LoraConfig(r=8, alpha=16, targets=["all-linear"]))   # wraps, freezes the rest
    ...train...
    merge_lora(model)            # folds every adapter into its weight and removes the wrappers

A wrapped projection computes  y = base(x) + s · B(A(dropout(x)))  with A [r, in] (Kaiming-uniform,
a = sqrt 5, as nn.Linear and PEFT initialise it), B [out, r] (zeros, so training starts at the base
model) and s = alpha / r, or alpha / sqrt(r) with rsLoRA (which keeps the update's scale steady as r
grows). DoRA (Liu et al. 2024) splits the merged weight into a direction and a learned per-row
magnitude m (initialised to the rows' norms): W' = m / ||W + s·BA||_row · (W + s·BA), the norm
treated as a constant in backward, as the paper and PEFT do.

The base may be an nn.Linear or any quantized linear with `dequantize()` (QLoRA: an NF4 base); the
wrapper keeps it under `.base`, frozen, and the adapter in float32.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterator
from typing import Literal
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from slmkit.errors import ConfigError
from slmkit.quant.checkpoint import set_module
from slmkit.quant.linear import QuantLinear

ALL_LINEAR = "all-linear"
LORA_PARAMS = ("lora_A", "lora_B", "lora_magnitude")


@dataclass
class LoraConfig:
    """The `lora:` section of a fine-tuning recipe."""

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    # "all-linear" (every projection but the output head), module names matched as suffixes
    # ("q_proj", "attn.q_proj"), or "re:REGEX" matched against the whole module name
    targets: list[str] = field(default_factory=lambda: [ALL_LINEAR])
    rslora: bool = False  # scale alpha / sqrt(r) instead of alpha / r
    dora: bool = False  # weight-decomposed LoRA: a learned magnitude per output row
    train_modules: list[str] = field(default_factory=list)  # trained in full beside the adapters, e.g. embed, head
    # when chat tokens were added: "new" trains only their embedding rows (finetune/token_rows.py), "all" every row
    token_rows: Literal["new", "all"] = "new"

    def __post_init__(self) -> None:
        if self.r <= 0:
            raise ValueError(f"lora.r must be > 0, got {self.r}")
        if self.alpha <= 0:
            raise ValueError(f"lora.alpha must be > 0, got {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"lora.dropout must be in [0, 1), got {self.dropout}")
        if isinstance(self.targets, str):
            self.targets = [self.targets]
        if not self.targets:
            raise ValueError("lora.targets is empty: name the projections to adapt, or use all-linear")

    @property
    def scaling(self) -> float:
        return self.alpha / (math.sqrt(self.r) if self.rslora else self.r)


def dense_weight(module: nn.Module) -> torch.Tensor:
    """The [out, in] float weight of an nn.Linear or a quantized linear (dequantized)."""
    return module.dequantize() if isinstance(module, QuantLinear) else module.weight


class LoraLinear(nn.Module):
    """A projection plus a low-rank update; `merged` means the update is folded into `base.weight`."""

    def __init__(self, base: nn.Module, r: int, scaling: float, dropout: float = 0.0, dora: bool = False):
        super().__init__()
        self.base = base
        self.in_features, self.out_features = base.in_features, base.out_features
        self.r, self.scaling = r, scaling
        device = dense_weight(base).device
        self.lora_A = nn.Parameter(torch.empty(r, self.in_features, device=device))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, r, device=device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.lora_magnitude = None
        if dora:
            self.lora_magnitude = nn.Parameter(dense_weight(base).detach().float().norm(dim=1))
        self.merged = False
        self.enabled = True

    def extra_repr(self) -> str:
        return f"r={self.r}, scaling={self.scaling:g}, dora={self.lora_magnitude is not None}, merged={self.merged}"

    def delta_weight(self) -> torch.Tensor:
        """s · B @ A, [out, in] float32."""
        return (self.lora_B.float() @ self.lora_A.float()) * self.scaling

    def _magnitude_scale(self, weight: torch.Tensor) -> torch.Tensor:
        """m / ||W + s·BA|| per output row; the norm is detached (DoRA's gradient approximation)."""
        norm = (weight.float() + self.delta_weight().detach()).norm(dim=1).detach()
        return self.lora_magnitude / norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if self.merged or not self.enabled:
            return y
        return self.adapted(x, y)

    def adapted(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The adapted output for input x, given the base's output y = base(x) (shared by several adapters
        when a server routes batch rows to different adapters: adapter_routing.py)."""
        dx = self.dropout(x)
        lora = F.linear(F.linear(dx.to(self.lora_A.dtype), self.lora_A), self.lora_B) * self.scaling
        if self.lora_magnitude is None:
            return y + lora.to(y.dtype)
        weight = dense_weight(self.base)
        mag = self._magnitude_scale(weight)
        bias = getattr(self.base, "bias", None)
        # (m/||.|| - 1) · xW^T: the base output without its bias, or recomputed on the dropped-out input
        base_term = F.linear(dx, weight.to(x.dtype)) if dx is not x else (y if bias is None else y - bias.to(y.dtype))
        return y + ((mag - 1) * base_term.float() + mag * lora.float()).to(y.dtype)

    def merged_weight(self) -> torch.Tensor:
        """The dense float32 weight with the update folded in (from the dequantized base for QLoRA)."""
        weight = dense_weight(self.base).detach().float()
        merged = weight + self.delta_weight().detach()
        if self.lora_magnitude is not None:
            merged = merged * (self.lora_magnitude.detach().float() / merged.norm(dim=1))[:, None]
        return merged

    @torch.no_grad()
    def inference_weight(self) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        """(weight, bias) as the decode step reads a plain layer (quant/kernels.py): the float32 base with the
        update folded in, computed now (a snapshot); None for a quantized base, whose dense copy would undo
        the memory it saves (the step then calls this module as it is)."""
        if not isinstance(self.base, nn.Linear) or self.base.weight.dtype != torch.float32:
            return None
        weight = self.base.weight if self.merged or not self.enabled else self.merged_weight()
        return weight.detach(), self.base.bias

    @torch.no_grad()
    def merge(self) -> None:
        if self.merged:
            return
        if not isinstance(self.base, nn.Linear):
            raise ConfigError("cannot merge an adapter into a quantized base in place: merge_lora(model) "
                              "writes a dense layer from the dequantized weight instead")
        if self.lora_magnitude is not None:  # the row norms unmerge needs to undo the rescaling
            self._merge_norm = (self.base.weight.float() + self.delta_weight()).norm(dim=1)
        self.base.weight.copy_(self.merged_weight().to(self.base.weight.dtype))
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if not self.merged:
            return
        merged = self.base.weight.float()
        if self.lora_magnitude is not None:  # W' = m/n · (W + sBA), so W + sBA = W' · n/m
            merged = merged * (self._merge_norm / self.lora_magnitude.float())[:, None]
        self.base.weight.copy_((merged - self.delta_weight()).to(self.base.weight.dtype))
        self.merged = False


def target_names(model: nn.Module, targets: list[str]) -> list[str]:
    """Names of the projections `targets` selects (see LoraConfig.targets); ConfigError when none."""
    linear = [name for name, m in model.named_modules()
              if isinstance(m, (nn.Linear, QuantLinear))]
    chosen: list[str] = []
    for target in targets:
        if target == ALL_LINEAR:
            found = [n for n in linear if n != "head"]
        elif target.startswith("re:"):
            pattern = re.compile(target[3:])
            found = [n for n in linear if pattern.fullmatch(n)]
        else:
            found = [n for n in linear if n == target or n.endswith("." + target)]
        if not found:
            raise ConfigError(f"lora target {target!r} matches no projection of this model; projections look like "
                              f"{', '.join(linear[:4])} (use a suffix such as q_proj, a re: pattern, or all-linear)")
        chosen += [n for n in found if n not in chosen]
    return chosen


def add_lora(model: nn.Module, cfg: LoraConfig) -> list[str]:
    """Wrap the targeted projections in place and make only the adapters (and cfg.train_modules) trainable."""
    if any(isinstance(m, LoraLinear) for m in model.modules()):
        raise ConfigError("this model already carries LoRA adapters; merge them (merge_lora) before adding new ones")
    names = target_names(model, cfg.targets)
    for p in model.parameters():
        p.requires_grad_(False)
    for name in names:
        set_module(model, name, LoraLinear(model.get_submodule(name), cfg.r, cfg.scaling, cfg.dropout, cfg.dora))
    for name in cfg.train_modules:
        try:
            module = model.get_submodule(name)
        except AttributeError:
            raise ConfigError(f"lora.train_modules: this model has no module {name!r} (e.g. embed, head, final_norm)") \
                from None
        for p in module.parameters():
            p.requires_grad_(True)
    return names


def lora_layers(model: nn.Module) -> Iterator[tuple[str, LoraLinear]]:
    for name, module in model.named_modules():
        if isinstance(module, LoraLinear):
            yield name, module


def merge_lora(model: nn.Module, keep_adapters: bool = True) -> list[str]:
    """Fold every adapter into a dense weight and put a plain nn.Linear back in its place (a quantized
    base becomes a dense layer from its dequantized weight); returns the names merged. With
    keep_adapters=False the adapters are dropped instead: what is left is the base the adapters were
    trained on (for an NF4 base, its dequantized weights)."""
    merged = []
    for name, layer in list(lora_layers(model)):
        base = layer.base
        dense = nn.Linear(layer.in_features, layer.out_features, bias=getattr(base, "bias", None) is not None,
                          device=layer.lora_A.device, dtype=torch.float32)
        if layer.merged and not keep_adapters:
            layer.unmerge()
        weight = dense_weight(base).detach().float() if (layer.merged or not keep_adapters) else layer.merged_weight()
        with torch.no_grad():
            dense.weight.copy_(weight)
            if dense.bias is not None:
                dense.bias.copy_(base.bias.detach().float())
        if isinstance(base, nn.Linear):
            dense = dense.to(base.weight.dtype)
        set_module(model, name, dense)
        merged.append(name)
    return merged


@contextlib.contextmanager
def lora_disabled(model: nn.Module):
    """Run the bare base (DPO's reference, a before/after comparison) without touching the adapters."""
    layers = [layer for _, layer in lora_layers(model)]
    previous = [layer.enabled for layer in layers]
    for layer in layers:
        layer.enabled = False
    try:
        yield model
    finally:
        for layer, was in zip(layers, previous):
            layer.enabled = was


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """What a fine-tune changes, by plain-model name: adapter tensors and fully trained modules."""
    return {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
