"""The reference model DPO measures the policy against: the policy as it was before alignment, frozen.

    reference = Reference("adapters_off", policy)          # LoRA: the same model with its adapters switched off
    reference = Reference("copy", policy, frozen_copy)     # full fine-tune (or a continued adapter): a frozen copy
    chosen, rejected = reference.logps(batch)              # [pairs] each, no gradient
    reference = precomputed_reference(reference, train_batches, eval_batches, autocast_ctx)  # once, then read

"precomputed" runs the reference once over every pair before training and keeps two floats per pair: each step
then runs only the policy (half the forward passes, and no second model in memory). Reference passes run in eval
mode (no dropout), as TRL's reference model does.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from slmkit.align.completion_logps import pair_logps, token_logps
from slmkit.align.preference_batches import every_pair
from slmkit.errors import ConfigError
from slmkit.finetune.lora import lora_disabled, lora_layers

REFERENCE_MODES = ("auto", "adapters_off", "copy", "precomputed")


class Reference:
    def __init__(self, mode: str, policy: torch.nn.Module, frozen: torch.nn.Module | None = None):
        if mode not in REFERENCE_MODES[1:]:
            raise ConfigError(f"unknown reference {mode!r}: choose one of {', '.join(REFERENCE_MODES)}")
        if mode == "adapters_off" and not any(True for _ in lora_layers(policy)):
            raise ConfigError("reference=adapters_off needs a LoRA policy; a full fine-tune uses reference=copy "
                              "or reference=precomputed")
        if mode == "copy" and frozen is None:
            raise ConfigError("reference=copy needs the frozen copy of the policy")
        self.mode, self.policy, self.frozen = mode, policy, frozen

    @torch.no_grad()
    def logps(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mode == "precomputed":
            if "ref_chosen_logps" not in batch:
                raise ConfigError("reference=precomputed but the batch carries no reference log-probs "
                                  "(precomputed_reference was not run)")
            return batch["ref_chosen_logps"], batch["ref_rejected_logps"]
        model = self.frozen if self.mode == "copy" else self.policy
        with _eval_mode(model), (lora_disabled(model) if self.mode == "adapters_off" else contextlib.nullcontext()):
            chosen, rejected, _, _ = pair_logps(model, batch)
        return chosen, rejected

    @torch.no_grad()
    def token_logps(self, ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per-token log-probs [rows, width] of `labels` under the reference (RL's KL term)."""
        if self.mode == "precomputed":
            raise ConfigError("RL samples new completions at every step: its reference cannot be precomputed; "
                              "use reference=adapters_off or copy")
        model = self.frozen if self.mode == "copy" else self.policy
        with _eval_mode(model), (lora_disabled(model) if self.mode == "adapters_off" else contextlib.nullcontext()):
            return token_logps(model, ids, labels)


@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module):
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


def reference_logps_of(reference: Reference, batches, count: int, device, autocast_ctx) -> tuple[np.ndarray, np.ndarray]:
    """(chosen, rejected) reference log-probs [count] of every pair in `batches`, placed by pair_index."""
    chosen, rejected = np.zeros(count, dtype=np.float32), np.zeros(count, dtype=np.float32)
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast_ctx():
            c, r = reference.logps(batch)
        where = batch["pair_index"].cpu().numpy()
        chosen[where], rejected[where] = c.float().cpu().numpy(), r.float().cpu().numpy()
    return chosen, rejected


def precomputed_reference(live: Reference, sources: list, device, autocast_ctx, batch_size: int) -> Reference:
    """Run `live` once over each source's pairs (PreferenceBatches / PreferenceEvalBatches), attach the
    log-probs to it (`source.reference`), and return a "precomputed" Reference that reads them."""
    for source in sources:
        source.reference = reference_logps_of(live, every_pair(source.examples, batch_size, source.pad_id),
                                              len(source.examples), device, autocast_ctx)
    return Reference("precomputed", live.policy)
