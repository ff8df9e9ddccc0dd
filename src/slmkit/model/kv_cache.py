"""A preallocated key/value cache for incremental decoding, batched over prompts of different lengths.

Layout and rules (what an inference engine builds on):

- `keys[layer]`, `values[layer]`: [batch, n_kv_heads, max_len, head_dim], allocated once; each forward
  writes its new tokens into slots `length .. length+T-1` (no torch.cat per step).
- Every row shares the slot counter `length`. Prompts of different lengths are LEFT-padded to the same
  length and passed with `attention_mask` [batch, T] (1 = real token, 0 = padding). Padded slots are
  remembered in `valid` [batch, max_len] and never attended to.
- Each row keeps its own position counter `next_position` [batch]: the RoPE / learned position of a
  token is the number of real tokens before it in its row, so a left-padded prompt gets exactly the
  positions it would have alone.

Typical use:

    cache = KVCache.for_model(model, batch_size=len(prompts), max_len=prompt_len + new_tokens)
    out = model(padded_ids, attention_mask=mask, cache=cache)      # prefill, [B, T] -> logits [B, T, V]
    next_ids = out.logits[:, -1].argmax(-1, keepdim=True)
    out = model(next_ids, cache=cache)                              # decode one token per row
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from slmkit.errors import SlmError


@dataclass
class CacheStep:
    """What one forward call writes: where (slot `start`), at which positions, and who may see what."""

    start: int  # first slot written by this call
    positions: torch.Tensor  # [batch, T] position of each new token within its own row
    attention_mask: torch.Tensor | None  # [batch, 1, T, start+T] bool (True = may attend), or None
    is_causal: bool  # True when SDPA's own causal mask is exact (empty cache, no padding)


class KVCache:
    def __init__(self, n_layers: int, batch_size: int, max_len: int, n_kv_heads: int, head_dim: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"):
        shape = (batch_size, n_kv_heads, max_len, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.valid = torch.zeros(batch_size, max_len, dtype=torch.bool, device=device)
        self.next_position = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.length = 0
        self.max_len = max_len
        self.batch_size = batch_size

    @classmethod
    def for_model(cls, model, batch_size: int, max_len: int | None = None, dtype: torch.dtype | None = None) -> "KVCache":
        """A cache shaped for `model` (a `Decoder`); max_len defaults to the model's context."""
        config = model.config
        param = next(model.parameters())
        return cls(config.n_layers, batch_size, max_len or config.max_seq_len, config.n_kv_heads, config.head_dim,
                   dtype or param.dtype, param.device)

    def prepare(self, n_new: int, attention_mask: torch.Tensor | None = None) -> CacheStep:
        """Reserve slots for `n_new` tokens per row and work out positions and the attention mask.

        attention_mask: [batch, n_new] of 1/0 (or bool) marking real tokens, or None for all real.
        """
        start = self.length
        if start + n_new > self.max_len:
            raise SlmError(f"KV cache is full: {start} + {n_new} tokens exceed its max_len {self.max_len}; "
                           "allocate a larger cache or generate fewer tokens")
        device = self.valid.device
        if attention_mask is None:
            real = torch.ones(self.batch_size, n_new, dtype=torch.bool, device=device)
        else:
            real = attention_mask.to(device=device, dtype=torch.bool)
            if real.shape != (self.batch_size, n_new):
                raise SlmError(f"attention_mask has shape {tuple(real.shape)}, expected {(self.batch_size, n_new)}")
        self.valid[:, start:start + n_new] = real
        # Padding tokens take the position of the next real token; they are never attended to.
        positions = self.next_position[:, None] + (real.long().cumsum(-1) - real.long())
        end = start + n_new
        everything_valid = bool(self.valid[:, :end].all())
        if everything_valid and (start == 0 or n_new == 1):
            # Fast paths: a plain causal prefill, or one new token that sees every slot.
            return CacheStep(start, positions, None, is_causal=(n_new > 1))
        return CacheStep(start, positions, padded_causal_mask(self.valid[:, :end], start), is_causal=False)

    def store(self, layer: int, start: int, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write key/value [batch, n_kv_heads, T, head_dim] at slot `start`; return the filled prefix
        [batch, n_kv_heads, start+T, head_dim] of this layer's keys and values."""
        end = start + key.shape[2]
        self.keys[layer][:, :, start:end] = key
        self.values[layer][:, :, start:end] = value
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def commit(self, step: CacheStep, n_new: int) -> None:
        """Advance the slot counter and each row's position after all layers have stored."""
        self.length = step.start + n_new
        self.next_position += self.valid[:, step.start:self.length].sum(-1)

    def reset(self) -> None:
        """Forget every token (the buffers are reused)."""
        self.length = 0
        self.valid.zero_()
        self.next_position.zero_()


def padded_causal_mask(key_valid: torch.Tensor, start: int) -> torch.Tensor:
    """Boolean SDPA mask [batch, 1, T, start+T] for queries at slots start..start+T-1.

    A query may see a key slot that is not after it and holds a real token. Each query also sees its
    own slot, so a padding query never has an empty row (an all-False row makes SDPA return NaN).
    key_valid: [batch, start+T] bool.
    """
    total = key_valid.shape[1]
    query_slots = torch.arange(start, total, device=key_valid.device)[:, None]
    key_slots = torch.arange(total, device=key_valid.device)[None, :]
    causal = key_slots <= query_slots  # [T, total]
    mask = (causal[None] & key_valid[:, None, :]) | (key_slots == query_slots)[None]
    return mask[:, None]
