"""GRPO as the one Trainer's objective: the loss on a rollout batch (rollouts.py), and held-out mean reward.

    objective = GRPOObjective(GRPOSettings(group_size=4, beta=0.04))
    trainer = Trainer(cfg, policy, RolloutBatches(...), loss_fn=objective, eval_fn=...)   # weight: completion tokens

The hook returns the per-token losses (grpo_loss.py) summed over its micro-batch; the Trainer divides by the
completion tokens of the whole optimizer step. Logged per step: reward (mean), reward_std, advantage_abs,
kl (k3, when there is a reference), clip_ratio, completion_tokens (mean length), finished (share ending with EOS),
rollout_tokens_per_s (the batched engine's completion tokens per second on that rollout batch).
Held out: val_reward (mean reward of one greedy completion per prompt) and val_finished.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from slmkit.align.completion_logps import token_logps
from slmkit.align.grpo_loss import grpo_token_loss
from slmkit.infer.sampling import SamplingParams
from slmkit.model.loss import IGNORE_INDEX

REFERENCES = ("auto", "adapters_off", "copy", "none")


@dataclass
class GRPOSettings:
    group_size: int = 4  # completions per prompt
    max_new_tokens: int = 128
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    iterations: int = 1  # optimizer steps per rollout batch (mu); > 1 makes the clipped ratio act
    epsilon_low: float = 0.2
    epsilon_high: float = 0.2  # DAPO's clip-higher: e.g. 0.28
    beta: float = 0.0  # weight of the k3 KL to the reference (0: no reference pass at all, as in DAPO / Dr. GRPO)
    scale_rewards: bool = True  # divide advantages by the group's std (False: Dr. GRPO)
    reference: str = "auto"  # auto | adapters_off | copy | none (auto: none when beta is 0)

    def __post_init__(self) -> None:
        if self.group_size < 2:
            raise ValueError(f"grpo.group_size must be at least 2 (advantages compare completions), got {self.group_size}")
        if self.iterations < 1 or self.max_new_tokens < 1:
            raise ValueError("grpo.iterations and grpo.max_new_tokens must be at least 1")
        if self.beta < 0 or not 0 <= self.epsilon_low < 1 or self.epsilon_high < 0:
            raise ValueError("grpo.beta must be >= 0, epsilon_low in [0, 1) and epsilon_high >= 0")
        if self.reference not in REFERENCES:
            raise ValueError(f"grpo.reference must be one of {', '.join(REFERENCES)}, got {self.reference!r}")


class GRPOObjective:
    def __init__(self, settings: GRPOSettings):
        self.settings = settings

    def __call__(self, model, batch: dict):
        s = self.settings
        mask = batch["labels"] != IGNORE_INDEX
        logps = token_logps(model, batch["input_ids"], batch["labels"])
        old = batch["old_logps"] if "old_logps" in batch else logps.detach()
        per_token, stats = grpo_token_loss(logps, old, batch["advantages"], mask, s.epsilon_low, s.epsilon_high,
                                           batch.get("ref_logps"), s.beta)
        rewards = batch["rewards"]
        metrics = {"reward": float(rewards.mean()), "reward_std": float(rewards.std()) if len(rewards) > 1 else 0.0,
                   "advantage_abs": float(batch["advantages"].abs().mean()),
                   "completion_tokens": float(mask.sum(-1).float().mean()),
                   "finished": float(batch["finished"].mean()), **rollout_speed(batch),
                   **{k: float(v.detach()) for k, v in stats.items()}}
        return per_token.sum(), metrics

    def evaluate(self, sampler, device, dist) -> dict:
        return held_out_reward(sampler, self.settings.max_new_tokens, device, dist)


def rollout_speed(batch: dict) -> dict:
    """The rollout batch's generation speed, for the log (absent from batches made before it was recorded)."""
    rate = batch.get("rollout_tokens_per_s")
    return {"rollout_tokens_per_s": float(rate[0])} if rate is not None and len(rate) else {}


@torch.no_grad()
def held_out_reward(sampler, max_new_tokens: int, device, dist) -> dict:
    """Mean reward of one greedy completion per held-out prompt of `sampler` (a RolloutBatches), over ranks."""
    mine = list(range(dist.rank, len(sampler.prompts), dist.world_size))
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0)
    total, finished = 0.0, 0.0
    if mine:
        rollouts = sampler.sample(mine, params, group_size=1)
        total = float(sampler.reward_fn(rollouts).sum())
        finished = float(sum(r.finished for r in rollouts))
    total, finished, n = dist.all_reduce_sum([total, finished, float(len(mine))], device)
    return {"val_reward": total / n, "val_finished": finished / n, "val_prompts": int(n)} if n else {}
