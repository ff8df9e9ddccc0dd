"""DPO as the one Trainer's objective: the loss hook on batches of pairs, and held-out preference metrics.

    objective = DPOObjective(DPOSettings(beta=0.1, loss_type="sigmoid"), reference)
    trainer = Trainer(cfg, model, train_pairs, loss_fn=objective, weight_fn=count_pairs,
                      eval_fn=lambda m, ctx: objective.evaluate(m, held_out, device, ctx, dist))

The hook returns the per-pair losses summed over its micro-batch; the Trainer divides by the pairs in the whole
optimizer step (weight_fn), so the step's loss is the batch mean whatever the accumulation or the number of
processes. Metrics per step are TRL's names: rewards/chosen, rewards/rejected, rewards/margins,
rewards/accuracies (the share of pairs whose chosen reward is strictly higher), logps/chosen, logps/rejected.
Held out: val_loss (mean DPO loss), val_accuracy (chosen reward above rejected, a tie counting one half, so a
policy equal to its reference scores 0.5), val_margin and the mean rewards.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from slmkit.align.completion_logps import pair_logps
from slmkit.align.dpo_loss import LOSS_TYPES, dpo_loss
from slmkit.align.reference import REFERENCE_MODES, Reference
from slmkit.train.batches import batch_rows


@dataclass
class DPOSettings:
    beta: float = 0.1  # strength of the pull towards the reference: small = far from it
    loss_type: str = "sigmoid"  # sigmoid | ipo | hinge | robust
    label_smoothing: float = 0.0  # cDPO / robust: the assumed share of flipped preference labels
    reference: str = "auto"  # auto | adapters_off | copy | precomputed (see reference.py)

    def __post_init__(self) -> None:
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"dpo.loss_type must be one of {', '.join(LOSS_TYPES)}, got {self.loss_type!r}")
        if self.reference not in REFERENCE_MODES:
            raise ValueError(f"dpo.reference must be one of {', '.join(REFERENCE_MODES)}, got {self.reference!r}")
        if self.beta <= 0:
            raise ValueError(f"dpo.beta must be positive, got {self.beta}")
        if not 0 <= self.label_smoothing < 0.5:
            raise ValueError(f"dpo.label_smoothing must be in [0, 0.5), got {self.label_smoothing}")


def count_pairs(batch) -> int:
    """The Trainer's loss weight of a batch of pairs: its number of pairs."""
    return batch_rows(batch)


class DPOObjective:
    def __init__(self, settings: DPOSettings, reference: Reference):
        self.settings, self.reference = settings, reference

    def losses(self, model, batch: dict):
        """(DPOOutput, policy chosen logps, policy rejected logps) of one batch of pairs."""
        s = self.settings
        chosen, rejected, n_chosen, n_rejected = pair_logps(model, batch)
        ref_chosen, ref_rejected = self.reference.logps(batch)
        out = dpo_loss(chosen, rejected, ref_chosen.to(chosen.dtype), ref_rejected.to(chosen.dtype), beta=s.beta,
                       loss_type=s.loss_type, label_smoothing=s.label_smoothing, chosen_tokens=n_chosen,
                       rejected_tokens=n_rejected)
        return out, chosen.detach(), rejected.detach()

    def __call__(self, model, batch: dict):
        out, chosen, rejected = self.losses(model, batch)
        metrics = {**out.metrics(), "logps/chosen": float(chosen.mean()), "logps/rejected": float(rejected.mean())}
        return out.losses.sum(), metrics

    @torch.no_grad()
    def evaluate(self, model, batches, device, autocast_ctx, dist) -> dict:
        """Held-out metrics over every pair of `batches` (PreferenceEvalBatches), summed over ranks."""
        was = model.training
        model.eval()
        sums = [0.0] * 6  # loss, wins (ties 1/2), margin, chosen reward, rejected reward, pairs
        for batch in batches:
            batch = {k: v.to(device) for k, v in batch.items()}
            with autocast_ctx():
                out, _, _ = self.losses(model, batch)
            c, r = out.chosen_rewards.double(), out.rejected_rewards.double()
            wins = (c > r).double() + 0.5 * (c == r).double()
            for i, v in enumerate((out.losses.double().sum(), wins.sum(), (c - r).sum(), c.sum(), r.sum())):
                sums[i] += float(v)
            sums[5] += len(c)
        model.train(was)
        loss, wins, margin, chosen, rejected, n = dist.all_reduce_sum(sums, device)
        if n == 0:
            return {}
        return {"val_loss": loss / n, "val_accuracy": wins / n, "val_margin": margin / n,
                "val_reward_chosen": chosen / n, "val_reward_rejected": rejected / n, "val_pairs": int(n)}
