"""Direct Preference Optimization: the loss of a policy against a reference on (chosen, rejected) pairs.

    chosen = sequence_logps(logits_c, labels_c, mask_c)        # summed over completion tokens, one per row
    out = dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=0.1, loss_type="sigmoid")
    out.loss.backward(); out.metrics()   # rewards/chosen, rewards/rejected, rewards/margins, rewards/accuracies

With delta = (policy_c - ref_c) - (policy_r - ref_r), per pair, then the batch mean (TRL's definitions,
trl/trainer/dpo_trainer.py):
- sigmoid (DPO, arXiv 2305.18290): -(1-e) log s(b delta) - e log s(-b delta), e = label_smoothing (cDPO);
- robust (arXiv 2403.00409): [-(1-e) log s(b delta) + e log s(-b delta)] / (1-2e), 0 <= e < 0.5;
- hinge (SLiC / RSO): relu(1 - b delta);
- ipo (arXiv 2310.12036): (delta' - 1/(2b))^2, delta' from log-probs divided by completion token counts.
When the policy equals the reference, sigmoid gives ln 2 exactly. Rewards are b (policy - reference) per
completion, detached; accuracy is the share of pairs whose chosen reward is higher.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from slmkit.errors import ConfigError, DataError

LOSS_TYPES = ("sigmoid", "ipo", "hinge", "robust")


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor,
                   names: list[str] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed log-probs [rows], completion token counts [rows]) of `labels` under `logits`, both [rows, T]
    aligned (logits[:, t] predicts labels[:, t]); only positions where `mask` is true count. A row with no
    completion token is an error naming it: its log-prob would be 0 for policy and reference alike, and
    the loss would sit at ln 2 with no gradient ("DPO loss stuck at 0.693")."""
    counts = mask.sum(-1)
    empty = (counts == 0).nonzero().flatten().tolist()
    if empty:
        which = names[empty[0]] if names else f"row {empty[0]}"
        raise DataError(f"{which} has an empty completion mask: no chosen/rejected token is scored (a prompt "
                        "that fills the whole length, or a completion lost in tokenization); shorten the prompt "
                        "or raise max_length")
    per_token = torch.gather(logits.float().log_softmax(-1), -1, labels.unsqueeze(-1)).squeeze(-1)
    return (per_token * mask).sum(-1), counts


@dataclass
class DPOOutput:
    loss: torch.Tensor  # scalar, the batch mean
    losses: torch.Tensor  # [pairs]
    chosen_rewards: torch.Tensor  # [pairs], detached
    rejected_rewards: torch.Tensor

    def metrics(self) -> dict[str, float]:
        margins = self.chosen_rewards - self.rejected_rewards
        return {"rewards/chosen": float(self.chosen_rewards.mean()), "rewards/rejected": float(self.rejected_rewards.mean()),
                "rewards/margins": float(margins.mean()),
                "rewards/accuracies": float((self.chosen_rewards > self.rejected_rewards).float().mean())}


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float = 0.1, loss_type: str = "sigmoid", label_smoothing: float = 0.0,
             chosen_tokens: torch.Tensor | None = None, rejected_tokens: torch.Tensor | None = None) -> DPOOutput:
    """The DPO loss of per-sequence summed log-probs ([pairs] each); token counts are needed by ipo."""
    _check(beta, loss_type, label_smoothing, chosen_tokens, rejected_tokens)
    chosen_ratio, rejected_ratio = policy_chosen - ref_chosen, policy_rejected - ref_rejected
    delta = chosen_ratio - rejected_ratio
    e = label_smoothing
    if loss_type == "sigmoid":
        losses = -(1 - e) * F.logsigmoid(beta * delta) - e * F.logsigmoid(-beta * delta)
    elif loss_type == "robust":
        losses = (-(1 - e) * F.logsigmoid(beta * delta) + e * F.logsigmoid(-beta * delta)) / (1 - 2 * e)
    elif loss_type == "hinge":
        losses = torch.relu(1 - beta * delta)
    else:  # ipo: per-token log-ratios
        delta = chosen_ratio / chosen_tokens - rejected_ratio / rejected_tokens
        losses = (delta - 1 / (2 * beta)) ** 2
    return DPOOutput(losses.mean(), losses, (beta * chosen_ratio).detach(), (beta * rejected_ratio).detach())


def _check(beta, loss_type, label_smoothing, chosen_tokens, rejected_tokens) -> None:
    if loss_type not in LOSS_TYPES:
        raise ConfigError(f"unknown DPO loss_type {loss_type!r}: choose one of {', '.join(LOSS_TYPES)}")
    if beta <= 0:
        raise ConfigError(f"beta must be positive, got {beta}")
    if not 0 <= label_smoothing < 0.5:
        raise ConfigError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
    if loss_type == "ipo" and (chosen_tokens is None or rejected_tokens is None):
        raise ConfigError("the ipo loss divides by completion token counts: pass chosen_tokens and rejected_tokens")
