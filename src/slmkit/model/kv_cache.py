"""`KVCache`: the preallocated key/value cache that training samples, generation, serving and
speculative decoding all decode with. One row per sequence, each row with its own length.

    kv: one tensor [2, n_layers, rows, n_kv_heads, max_len, head_dim], allocated once;
    keys(layer) = kv[0, layer], values(layer) = kv[1, layer]: [rows, n_kv_heads, max_len, head_dim] views.
    lengths: Python ints per row, how many slots hold real tokens.

A row's token at position p lives in slot p of that row, so positions are slot indices: a row can be
refilled with a new request while the others keep decoding (continuous batching), and speculative
decoding rolls a row back by lowering its length (`set_length`). One tensor for all layers lets the
one-token decode step cut every layer's valid prefix with a single narrow.

    cache = KVCache.for_model(model, rows=2, max_len=64)
    model(prompt_a, cache=cache, cache_row=0)                 # prefill row 0: [1, Ta]
    model(prompt_b, cache=cache, cache_row=1)                 # prefill row 1: [1, Tb]
    out = model(next_ids, cache=cache)                         # [2, 1]: one token per row, each at its own position
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from slmkit.errors import SlmError


@dataclass
class CacheStep:
    """What one forward call writes: `n_new` tokens into each of the rows row0.. row0+len(lengths)-1."""

    row0: int
    lengths: list[int]  # each row's length before this call (its first new token's position)
    n_new: int
    positions: torch.Tensor  # [1 or batch, n_new] position of each new token in its row
    attention_mask: torch.Tensor | None  # bool [batch, 1, n_new, end] (True = may attend), or None
    is_causal: bool  # True when SDPA's own causal mask is exact (every row empty before this call)

    @property
    def uniform(self) -> bool:
        return min(self.lengths) == max(self.lengths)

    @property
    def end(self) -> int:
        """Slots that attention reads this call: the longest row's filled prefix after it."""
        return max(self.lengths) + self.n_new


class KVCache:
    def __init__(self, n_layers: int, rows: int, max_len: int, n_kv_heads: int, head_dim: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"):
        self.kv = torch.zeros((2, n_layers, rows, n_kv_heads, max_len, head_dim), dtype=dtype, device=device)
        self.n_layers = n_layers
        self.rows = rows
        self.max_len = max_len
        self.lengths = [0] * rows
        self.device = torch.device(device)
        self.slots = torch.arange(max_len, device=device)
        self.step_views: dict = {}  # views of `kv` a decode step derives once per (row0, rows) and reuses

    @classmethod
    def for_model(cls, model, rows: int, max_len: int | None = None, dtype: torch.dtype | None = None) -> "KVCache":
        """A cache shaped for `model` (a Decoder); max_len defaults to (and is capped at) its context."""
        config = model.config
        param = next(model.parameters())
        dtype = dtype or (param.dtype if param.is_floating_point() else torch.float32)
        return cls(config.n_layers, rows, min(max_len or config.max_seq_len, config.max_seq_len),
                   config.n_kv_heads, config.head_dim, dtype, param.device)

    def keys(self, layer: int) -> torch.Tensor:
        return self.kv[0, layer]

    def values(self, layer: int) -> torch.Tensor:
        return self.kv[1, layer]

    def set_length(self, row: int, length: int) -> None:
        """Declare that `row` holds `length` tokens (rolls back speculative tokens, or frees a row with 0)."""
        self.lengths[row] = length

    def check_room(self, row: int, n_new: int) -> None:
        if self.lengths[row] + n_new > self.max_len:
            raise SlmError(f"KV cache is full: row {row} holds {self.lengths[row]} tokens and {n_new} more exceed "
                           f"its max_len {self.max_len}; allocate a larger cache or generate fewer tokens")

    def move_row(self, source: int, target: int) -> None:
        """Copy row `source` into row `target` (keeps running rows packed at the front)."""
        if source == target:
            return
        n = self.lengths[source]
        self.kv[:, :, target, :, :n] = self.kv[:, :, source, :, :n]
        self.set_length(target, n)

    def nbytes(self) -> int:
        return self.kv.numel() * self.kv.element_size()

    # --- what Decoder.forward calls -----------------------------------------------------------------
    def prepare(self, batch: int, n_new: int, row0: int = 0) -> CacheStep:
        """Plan a forward of `n_new` tokens for each of rows row0..row0+batch-1: positions and mask."""
        if row0 < 0 or row0 + batch > self.rows:
            raise SlmError(f"rows {row0}..{row0 + batch - 1} are outside this KV cache's {self.rows} rows")
        lengths = self.lengths[row0:row0 + batch]
        for b in range(batch):
            self.check_room(row0 + b, n_new)
        start, uniform = lengths[0], min(lengths) == max(lengths)
        if uniform:
            positions = self.slots[start:start + n_new][None]  # [1, n_new]
        else:
            positions = torch.tensor(lengths, device=self.device)[:, None] + self.slots[:n_new][None]
        mask = None
        if not uniform or (start > 0 and n_new > 1):
            # Query at position p sees slots <= p of its own row (slots past a row's length are stale).
            end = max(lengths) + n_new
            mask = (self.slots[:end][None, None] <= positions[:, :, None])[:, None]  # [batch, 1, n_new, end]
        return CacheStep(row0, lengths, n_new, positions, mask, is_causal=uniform and start == 0 and n_new > 1)

    def store(self, layer: int, step: CacheStep, key: torch.Tensor, value: torch.Tensor):
        """Write key/value [batch, n_kv_heads, n_new, head_dim] at each row's next slots; return this
        layer's keys and values [batch, n_kv_heads, end, head_dim] for the rows of `step`."""
        keys, values = self.kv[0, layer], self.kv[1, layer]
        r0, batch, n = step.row0, len(step.lengths), step.n_new
        if step.uniform:
            start = step.lengths[0]
            keys[r0:r0 + batch, :, start:start + n] = key
            values[r0:r0 + batch, :, start:start + n] = value
        else:
            for b, length in enumerate(step.lengths):
                keys[r0 + b, :, length:length + n] = key[b]
                values[r0 + b, :, length:length + n] = value[b]
        end = step.end
        return keys[r0:r0 + batch, :, :end], values[r0:r0 + batch, :, :end]

    def commit(self, step: CacheStep) -> None:
        """Advance each row's length after every layer has stored."""
        for b, length in enumerate(step.lengths):
            self.lengths[step.row0 + b] = length + step.n_new


def padded_causal_mask(key_valid: torch.Tensor) -> torch.Tensor:
    """Boolean SDPA mask [batch, 1, T, T] for a padded batch without a cache (1 = real token).

    A query may see a key that is not after it and holds a real token. Each query also sees itself, so
    a padding query never has an empty row (an all-False row makes SDPA return NaN).
    key_valid: [batch, T] bool.
    """
    total = key_valid.shape[1]
    slots = torch.arange(total, device=key_valid.device)
    causal = slots[None, :] <= slots[:, None]  # [T, T]
    mask = (causal[None] & key_valid[:, None, :]) | torch.eye(total, dtype=torch.bool, device=key_valid.device)[None]
    return mask[:, None]


def document_causal_mask(document_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask, positions) for packed rows without a cache: document_ids [batch, T] ints, -1 for padding.

    mask: bool [batch, 1, T, T]: a query sees the keys not after it in its own document, so attention never
    crosses examples; a padding query sees only itself (no all-False row, which makes SDPA return NaN).
    positions: [batch, T]: each token's index within its document (restarting at 0 at each one).
    """
    total = document_ids.shape[1]
    slots = torch.arange(total, device=document_ids.device)
    causal = slots[None, :] <= slots[:, None]  # [T, T]
    same = document_ids[:, :, None] == document_ids[:, None, :]  # [batch, T, T]
    visible = causal[None] & same
    positions = visible.sum(-1) - 1  # earlier tokens of the same document
    real_key = (document_ids >= 0)[:, None, :]
    mask = (visible & real_key) | torch.eye(total, dtype=torch.bool, device=document_ids.device)[None]
    return mask[:, None], positions
