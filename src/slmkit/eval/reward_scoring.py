"""A reward model's scores of a chat task's replies, as evaluation metrics (the scorer: model/reward_scoring.py).

    metrics = reward_metrics(RewardScorer.from_dir("runs/demo-reward"), conversations, replies)
"""

from __future__ import annotations

import torch

from slmkit.model.reward_scoring import RewardScorer


def reward_metrics(scorer: RewardScorer, conversations: list[list[dict]], replies: list[str]) -> dict[str, float]:
    """{"reward": mean, "reward_std": population std, "reward_min", "reward_max"} over the replies."""
    scores = torch.tensor(scorer.score_replies(conversations, replies), dtype=torch.float64)
    return {"reward": scores.mean().item(), "reward_std": scores.std(unbiased=False).item(),
            "reward_min": scores.min().item(), "reward_max": scores.max().item()}
