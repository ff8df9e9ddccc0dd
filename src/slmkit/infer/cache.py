"""`SlotCache`: the generation engine's preallocated key/value cache, one row per running sequence.

Unlike `slmkit.model.KVCache` (one shared slot counter, left-padded prompts), every row here has its
own length: a sequence's token at position p lives in slot p of its row, so positions are simply slot
indices, a row can be refilled with a new request while the others keep decoding (continuous
batching), and speculative decoding rolls a row back by lowering its length.

    keys[layer], values[layer]: [rows, n_kv_heads, max_len, head_dim], allocated once.
    lengths: Python ints per row (how many slots hold real tokens); `lengths_t` mirrors them as a tensor.
"""

from __future__ import annotations

import torch

from slmkit.errors import SlmError


class SlotCache:
    def __init__(self, n_layers: int, rows: int, max_len: int, n_kv_heads: int, head_dim: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"):
        shape = (rows, n_kv_heads, max_len, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.rows = rows
        self.max_len = max_len
        self.lengths = [0] * rows
        self.lengths_t = torch.zeros(rows, dtype=torch.long, device=device)
        self.slots = torch.arange(max_len, device=device)

    @classmethod
    def for_model(cls, model, rows: int, max_len: int | None = None, dtype: torch.dtype | None = None) -> "SlotCache":
        config = model.config
        param = next(model.parameters())
        dtype = dtype or (param.dtype if param.is_floating_point() else torch.float32)
        return cls(config.n_layers, rows, min(max_len or config.max_seq_len, config.max_seq_len),
                   config.n_kv_heads, config.head_dim, dtype, param.device)

    def set_length(self, row: int, length: int) -> None:
        """Declare that `row` holds `length` tokens (rolls back speculative tokens, or frees a row with 0)."""
        self.lengths[row] = length
        self.lengths_t[row] = length

    def check_room(self, row: int, n_new: int) -> None:
        if self.lengths[row] + n_new > self.max_len:
            raise SlmError(f"KV cache row {row} is full: {self.lengths[row]} + {n_new} tokens exceed "
                           f"max_len {self.max_len}")

    def move_row(self, source: int, target: int) -> None:
        """Copy row `source` into row `target` (used to keep running rows packed at the front)."""
        if source == target:
            return
        for k, v in zip(self.keys, self.values):
            n = self.lengths[source]
            k[target, :, :n] = k[source, :, :n]
            v[target, :, :n] = v[source, :, :n]
        self.set_length(target, self.lengths[source])

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.keys + self.values)
