"""Several adapters over one base in one forward pass: each batch row picks its adapter.

    route = AdapterRoute()
    ...                                   # adapter_set.py wraps the base's modules with the route
    route.set([0, 1, -1])                 # row 0 -> adapter 0, row 1 -> adapter 1, row 2 -> the bare base
    logits = model(ids).logits            # one forward; every row as if its adapter ran alone

What a server needs to batch requests for different fine-tunes together (S-LoRA / vLLM's multi-LoRA):
the base weights are shared, only the small per-adapter parts differ.

- `RoutedLora` wraps a projection: the base output is computed once for all rows, then each adapter
  adds its low-rank update to its own rows (`LoraLinear.adapted`, so DoRA and an NF4 base work too).
- `RoutedModule` wraps a module some adapters trained in full (the embedding, the head of a fine-tune
  that added chat tokens): each group of rows runs its adapter's copy, or the base's. Heads with more
  rows than the base's (added tokens) give wider logits; the narrower rows are padded with -inf, so
  a row never samples a token its adapter does not know.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

BASE = -1  # the route index of the bare base model


@dataclass
class RoutedAdapter:
    """One model id a server offers: an adapter (index >= 0) or the bare base (index -1)."""

    name: str
    index: int
    tokenizer: object | None
    eos_ids: set[int] = field(default_factory=set)
    vocab_size: int = 0


class AdapterRoute:
    """The adapter of each row of the next forward; shared by every routed module of one model."""

    def __init__(self) -> None:
        self.groups: list[tuple[int, torch.Tensor | None]] = [(BASE, None)]

    def set(self, indices: list[int], device=None) -> None:
        """One adapter index per batch row (-1: the base). Rows are grouped once here, not per module."""
        if len(set(indices)) <= 1:
            self.groups = [(indices[0] if indices else BASE, None)]  # None: every row
            return
        by_adapter: dict[int, list[int]] = {}
        for row, index in enumerate(indices):
            by_adapter.setdefault(index, []).append(row)
        self.groups = [(k, torch.tensor(rows, device=device)) for k, rows in by_adapter.items()]


class RoutedLora(nn.Module):
    """A base projection shared by several adapters' LoRA updates (`adapters[str(k)]` is a LoraLinear
    whose `.base` is this module's `base`)."""

    def __init__(self, base: nn.Module, route: AdapterRoute):
        super().__init__()
        self.base = base
        self.adapters = nn.ModuleDict()
        self.route = route
        self.in_features, self.out_features = base.in_features, base.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        groups = self.route.groups
        if len(groups) == 1:
            layer = self.adapters[str(groups[0][0])] if str(groups[0][0]) in self.adapters else None
            return y if layer is None else layer.adapted(x, y)
        out = y.clone()
        for index, rows in groups:
            layer = self.adapters[str(index)] if str(index) in self.adapters else None
            if layer is not None:
                out[rows] = layer.adapted(x[rows], y[rows])
        return out


class RoutedModule(nn.Module):
    """A module some adapters replace with their own fully trained copy (`variants[str(k)]`)."""

    def __init__(self, base: nn.Module, route: AdapterRoute):
        super().__init__()
        self.base = base
        self.variants = nn.ModuleDict()
        self.route = route

    @property
    def weight(self) -> torch.Tensor:  # what code that reads `model.embed.weight` (dtype, device) sees
        return self.base.weight

    def _module(self, index: int) -> nn.Module:
        return self.variants[str(index)] if str(index) in self.variants else self.base

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups = self.route.groups
        if len(groups) == 1:
            return self._module(groups[0][0])(x)
        parts = [(rows, self._module(index)(x[rows])) for index, rows in groups]
        width = max(part.shape[-1] for _, part in parts)
        first = parts[0][1]
        out = first.new_full((x.shape[0], *first.shape[1:-1], width), float("-inf") if first.is_floating_point() else 0)
        for rows, part in parts:
            out[rows, ..., : part.shape[-1]] = part
        return out
