"""Reward modelling as the one Trainer's objective: the Bradley-Terry loss on pairs, and held-out accuracy.

    loss = bradley_terry_loss(chosen_rewards, rejected_rewards, margin)      # [pairs] each -> [pairs]
    objective = RewardObjective(RewardSettings())
    trainer = Trainer(cfg, reward_model, pairs, loss_fn=objective, weight_fn=count_pairs, eval_fn=...)

Bradley-Terry (the InstructGPT reward model; TRL's RewardTrainer): P(chosen preferred) = s(r_c - r_r), so the loss
per pair is -log s(r_c - r_r - m) with an optional margin m per pair (Llama 2's margin loss, the record's `margin`),
plus `center_rewards_coefficient` x (r_c + r_r)^2 to keep rewards near zero (arXiv 2312.09244; TRL's option). With
the zero-initialised head every reward starts at 0 and the loss at ln 2. Metrics: accuracy (chosen reward
strictly higher), rewards/chosen, rewards/rejected, rewards/margins; held out, val_accuracy counts a tie one half.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class RewardSettings:
    center_rewards_coefficient: float = 0.0
    use_margin: bool = True  # subtract each record's `margin` (0 when the data has none)

    def __post_init__(self) -> None:
        if self.center_rewards_coefficient < 0:
            raise ValueError(f"reward.center_rewards_coefficient must be 0 or more, got {self.center_rewards_coefficient}")


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor, margin: torch.Tensor | None = None,
                       center_rewards_coefficient: float = 0.0) -> torch.Tensor:
    """Per-pair loss [pairs] of rewards [pairs]: -log sigmoid(r_c - r_r - margin) (+ centring)."""
    delta = chosen - rejected - (margin if margin is not None else 0.0)
    losses = -F.logsigmoid(delta)
    if center_rewards_coefficient:
        losses = losses + center_rewards_coefficient * (chosen + rejected) ** 2
    return losses


def pair_rewards(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen rewards, rejected rewards) [pairs] in one forward of both sides (reward_batches.py)."""
    ids = torch.cat([batch["chosen_ids"], batch["rejected_ids"]])
    mask = torch.cat([batch["chosen_mask"], batch["rejected_mask"]])
    rewards = model(ids, attention_mask=mask)
    pairs = batch["chosen_ids"].shape[0]
    return rewards[:pairs], rewards[pairs:]


class RewardObjective:
    def __init__(self, settings: RewardSettings):
        self.settings = settings

    def losses(self, model, batch: dict):
        chosen, rejected = pair_rewards(model, batch)
        margin = batch["margin"].to(chosen.dtype) if self.settings.use_margin else None
        return bradley_terry_loss(chosen, rejected, margin, self.settings.center_rewards_coefficient), chosen, rejected

    def __call__(self, model, batch: dict):
        losses, chosen, rejected = self.losses(model, batch)
        c, r = chosen.detach(), rejected.detach()
        metrics = {"accuracy": float((c > r).float().mean()), "rewards/chosen": float(c.mean()),
                   "rewards/rejected": float(r.mean()), "rewards/margins": float((c - r).mean())}
        return losses.sum(), metrics

    @torch.no_grad()
    def evaluate(self, model, batches, device, autocast_ctx, dist) -> dict:
        """Held-out val_loss, val_accuracy (ties 1/2), val_margin and mean rewards, summed over ranks."""
        was = model.training
        model.eval()
        sums = [0.0] * 5  # loss, wins, margin, chosen, pairs
        for batch in batches:
            batch = {k: v.to(device) for k, v in batch.items()}
            with autocast_ctx():
                losses, chosen, rejected = self.losses(model, batch)
            c, r = chosen.double(), rejected.double()
            wins = (c > r).double() + 0.5 * (c == r).double()
            for i, v in enumerate((losses.double().sum(), wins.sum(), (c - r).sum(), c.sum())):
                sums[i] += float(v)
            sums[4] += len(c)
        model.train(was)
        loss, wins, margin, chosen, n = dist.all_reduce_sum(sums, device)
        if n == 0:
            return {}
        return {"val_loss": loss / n, "val_accuracy": wins / n, "val_margin": margin / n,
                "val_reward_chosen": chosen / n, "val_pairs": int(n)}
