"""PPO's pieces for language models (Ouyang et al. 2022; TRL's PPOTrainer): per-token rewards with a KL penalty,
generalised advantage estimation, and the clipped value loss.

    rewards = kl_penalised_rewards(scores, logps, ref_logps, mask, kl_coef=0.05)    # [rows, width]
    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=0.95)          # [rows, width] each
    loss = clipped_value_loss(new_values, old_values, returns, mask, clip=0.2)      # scalar per token, summed

- Token rewards: -kl_coef x (log pi_old - log pi_ref) at every completion token (the per-token KL penalty) plus the
  sequence's score at its last completion token.
- GAE (Schulman et al. 2016): delta_t = r_t + gamma V_{t+1} - V_t (V after the last token is 0), A_t = delta_t +
  gamma lam A_{t+1}, computed right to left over each row's completion tokens; returns = A + V.
- Value loss: 1/2 max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2) per token.
The policy loss is GRPO's clipped per-token loss (grpo_loss.grpo_token_loss) with these per-token advantages.
"""

from __future__ import annotations

import torch


def kl_penalised_rewards(scores: torch.Tensor, logps: torch.Tensor, ref_logps: torch.Tensor, mask: torch.Tensor,
                         kl_coef: float) -> torch.Tensor:
    """[rows, width] token rewards: the KL penalty on every masked token, the score [rows] on each row's last one."""
    mask = mask.to(logps.dtype)
    rewards = -kl_coef * (logps - ref_logps) * mask
    last = (mask.shape[1] - 1 - mask.flip(-1).argmax(-1)).long()
    rows = torch.arange(mask.shape[0], device=mask.device)
    rewards[rows, last] += scores.to(rewards.dtype)
    return rewards


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages, returns) [rows, width], 0 off the mask. Completion tokens of a row must be contiguous."""
    mask = mask.to(values.dtype)
    advantages = torch.zeros_like(values)
    running = torch.zeros(values.shape[0], dtype=values.dtype, device=values.device)
    next_value = torch.zeros_like(running)
    for t in range(values.shape[1] - 1, -1, -1):
        m = mask[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = (delta + gamma * lam * running) * m
        advantages[:, t] = running
        next_value = torch.where(m > 0, values[:, t], next_value)  # padding after the row keeps V_{T+1} = 0
    return advantages, (advantages + values) * mask


def whiten(values: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / std over the masked entries (PPO's advantage normalisation), 0 off the mask."""
    mask = mask.to(values.dtype)
    n = mask.sum().clamp(min=1)
    mean = (values * mask).sum() / n
    var = (((values - mean) * mask) ** 2).sum() / (n - 1).clamp(min=1)
    return (values - mean) * torch.rsqrt(var + eps) * mask


def clipped_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
                       clip: float = 0.2) -> torch.Tensor:
    """Per-token value loss [rows, width], 0 off the mask."""
    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    loss = 0.5 * torch.maximum((values - returns) ** 2, (clipped - returns) ** 2)
    return loss * mask.to(loss.dtype)
