"""`ModelRunner`: how generation runs a `Decoder` against its `KVCache`.

One token per row goes through `OneTokenStep` (one_token_step.py) when the model admits it (RMSNorm +
SwiGLU + RoPE, float32: Llama, Qwen3 and their int8 / int4 checkpoints); everything else — prefill,
several tokens per row (speculative verification), other families — is `Decoder.forward` with the cache.
`fast_path_refusal` says why a model decodes without the step (None when it uses it).

A model that carries several adapters (finetune/adapter_set.py) has an `adapter_route`; `forward`
and `decode` then take the adapter index of each row (-1: the bare base) and set the route first.

The step snapshots weights when built: build a new runner after changing the model's weights.
"""

from __future__ import annotations

import torch

from slmkit.infer.one_token_step import OneTokenStep, refusal
from slmkit.model.kv_cache import KVCache


class ModelRunner:
    def __init__(self, model, fast: bool = True):
        self.model = model
        self.config = model.config
        self.device = next(model.parameters()).device
        self.dtype = model.embed.weight.dtype
        self.fast_path_refusal = refusal(model) if fast else "the one-token step was turned off (fast=False)"
        self.fast = OneTokenStep(model) if self.fast_path_refusal is None else None
        self.route = getattr(model, "adapter_route", None)

    def new_cache(self, rows: int, max_len: int | None = None) -> KVCache:
        return KVCache.for_model(self.model, rows, max_len, dtype=self.dtype)

    @torch.inference_mode()
    def decode(self, token: int, cache: KVCache, row: int = 0, adapter: int = -1) -> torch.Tensor:
        """Append one token (a Python int) to cache row `row`; float32 logits [1, vocab] for it."""
        if self.fast is not None:
            return self.fast.step(token, cache, row)
        return self.forward(torch.tensor([[token]], device=self.device), cache, row0=row, adapters=[adapter])

    @torch.inference_mode()
    def forward(self, ids: torch.Tensor, cache: KVCache, row0: int = 0, all_logits: bool = False,
                adapters: list[int] | None = None) -> torch.Tensor:
        """Append `ids` [B, T] to cache rows row0..row0+B-1 (row b's tokens at positions
        lengths[b]..lengths[b]+T-1) and return float32 logits: [B, vocab] for the last position, or
        [B, T, vocab] with all_logits. `adapters`: each row's adapter index, for a routed model."""
        if self.route is not None:
            self.route.set(adapters or [-1] * ids.shape[0], self.device)
        if ids.shape[1] == 1 and self.fast is not None:
            logits = self.fast.step(ids, cache, row0)
            return logits[:, None] if all_logits else logits
        out = self.model(ids, cache=cache, cache_row=row0, last_logits_only=not all_logits)
        logits = out.logits.float()
        return logits if all_logits else logits[:, -1]
