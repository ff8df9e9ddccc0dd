"""GRPO's pieces (arXiv 2402.03300, DeepSeekMath): group-normalised advantages, the clipped policy loss per token and
the k3 estimate of the KL divergence to the reference.

    advantages = group_advantages(rewards, group_size=4)               # [prompts x 4] -> [prompts x 4]
    per_token = grpo_token_loss(logps, old_logps, advantages, mask, epsilon=0.2, ref_logps=ref, beta=0.04)

- Advantages: each completion's reward minus its group's mean (the completions of one prompt), divided by the
  group's standard deviation (unbiased, + 1e-4 against a group of equal rewards; `scale=False` keeps only the
  mean: Dr. GRPO, arXiv 2503.20783). Rewards [1, 0, 0, 1] give +-0.866.
- Policy loss per completion token t: -min(r_t A, clip(r_t, 1 - eps_low, 1 + eps_high) A) with r_t = pi / pi_old;
  with one optimizer step per rollout batch pi_old is pi itself (detached), r_t = 1 and the gradient is A grad log pi.
- KL (Schulman's k3, unbiased and always >= 0): exp(ref - logp) - (ref - logp) - 1, added with weight beta.
The Trainer sums the per-token losses of its step and divides by the completion tokens of the whole optimizer
step (token-level normalisation: DAPO, arXiv 2503.14476), so long and short completions weigh per token.
"""

from __future__ import annotations

import torch

ADVANTAGE_EPS = 1e-4


def group_advantages(rewards: torch.Tensor, group_size: int, scale: bool = True) -> torch.Tensor:
    """[n] rewards in groups of `group_size` consecutive completions -> [n] advantages."""
    if group_size < 2 or rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not form groups of {group_size} (at least 2 per group)")
    grouped = rewards.float().view(-1, group_size)
    advantages = grouped - grouped.mean(-1, keepdim=True)
    if scale:
        advantages = advantages / (grouped.std(-1, keepdim=True) + ADVANTAGE_EPS)
    return advantages.view(-1)


def kl_k3(logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """Per-token KL(pi || pi_ref) estimate from the sampled tokens' log-probs (same shapes)."""
    delta = ref_logps - logps
    return torch.exp(delta) - delta - 1


def grpo_token_loss(logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                    epsilon_low: float = 0.2, epsilon_high: float = 0.2, ref_logps: torch.Tensor | None = None,
                    beta: float = 0.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(per-token loss [rows, width], 0 off the mask; {"clip_ratio", "kl"} over the masked tokens).
    logps, old_logps, ref_logps: [rows, width] log-probs of the sampled tokens; advantages [rows] (GRPO: one per
    completion) or [rows, width] (PPO: one per token); mask [rows, width]."""
    ratio = torch.exp(logps - old_logps)
    a = advantages.unsqueeze(-1) if advantages.dim() == 1 else advantages
    unclipped, clipped = ratio * a, torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high) * a
    per_token = -torch.minimum(unclipped, clipped)
    mask = mask.to(per_token.dtype)
    n = mask.sum().clamp(min=1)
    stats = {"clip_ratio": ((clipped < unclipped).to(mask.dtype) * mask).sum() / n}
    if ref_logps is not None:
        kl = kl_k3(logps, ref_logps)
        stats["kl"] = (kl * mask).sum() / n
        if beta:
            per_token = per_token + beta * kl
    return per_token * mask, stats
