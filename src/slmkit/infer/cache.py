"""`SlotCache`: the generation engine's preallocated key/value cache, one row per running sequence.

Unlike `slmkit.model.KVCache` (one shared slot counter, left-padded prompts), every row here has its
own length: a sequence's token at position p lives in slot p of its row, so positions are simply slot
indices, a row can be refilled with a new request while the others keep decoding (continuous
batching), and speculative decoding rolls a row back by lowering its length.

    kv: one tensor [2, n_layers, rows, n_kv_heads, max_len, head_dim], allocated once;
    keys[layer] = kv[0, layer], values[layer] = kv[1, layer]: [rows, n_kv_heads, max_len, head_dim] views.
    lengths: Python ints per row (how many slots hold real tokens); `lengths_t` builds them as a tensor.

One tensor for all layers lets the one-token decode path (`ModelRunner`) cut every layer's valid
prefix with a single narrow per step instead of one slice per layer.
"""

from __future__ import annotations

import torch

from slmkit.errors import SlmError


class SlotCache:
    def __init__(self, n_layers: int, rows: int, max_len: int, n_kv_heads: int, head_dim: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"):
        self.kv = torch.zeros((2, n_layers, rows, n_kv_heads, max_len, head_dim), dtype=dtype, device=device)
        self.keys = list(self.kv[0].unbind(0))
        self.values = list(self.kv[1].unbind(0))
        self.n_layers = n_layers
        self.rows = rows
        self.max_len = max_len
        self.lengths = [0] * rows
        self.device = device
        self.slots = torch.arange(max_len, device=device)
        self.fast_state: dict = {}  # per-row views the runner's one-token path keeps (see runner.py)

    @classmethod
    def for_model(cls, model, rows: int, max_len: int | None = None, dtype: torch.dtype | None = None) -> "SlotCache":
        config = model.config
        param = next(model.parameters())
        dtype = dtype or (param.dtype if param.is_floating_point() else torch.float32)
        return cls(config.n_layers, rows, min(max_len or config.max_seq_len, config.max_seq_len),
                   config.n_kv_heads, config.head_dim, dtype, param.device)

    @property
    def lengths_t(self) -> torch.Tensor:
        """`lengths` as a long tensor (built on demand: the decode loop only touches the Python ints)."""
        return torch.tensor(self.lengths, dtype=torch.long, device=self.device)

    def set_length(self, row: int, length: int) -> None:
        """Declare that `row` holds `length` tokens (rolls back speculative tokens, or frees a row with 0)."""
        self.lengths[row] = length

    def check_room(self, row: int, n_new: int) -> None:
        if self.lengths[row] + n_new > self.max_len:
            raise SlmError(f"KV cache row {row} is full: {self.lengths[row]} + {n_new} tokens exceed "
                           f"max_len {self.max_len}")

    def move_row(self, source: int, target: int) -> None:
        """Copy row `source` into row `target` (used to keep running rows packed at the front)."""
        if source == target:
            return
        n = self.lengths[source]
        self.kv[:, :, target, :, :n] = self.kv[:, :, source, :, :n]
        self.set_length(target, n)

    def nbytes(self) -> int:
        return self.kv.numel() * self.kv.element_size()
