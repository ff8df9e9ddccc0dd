"""Summed log-probabilities of completions under a model: what DPO, its reference and its evaluation compare.

    chosen, rejected, n_chosen, n_rejected = pair_logps(model, batch)   # [pairs] each (preference_batches.py)

The decoder returns final hidden states and the head runs only at scored positions, so memory grows with the
completion tokens, not with rows x width x vocabulary (a 151k-id Qwen3 head would need gigabytes of logits).
Chosen and rejected sides go through one forward ([2 x pairs, width], TRL's concatenated forward): one pass
of the weights per micro-batch instead of two.
"""

from __future__ import annotations

import torch

from slmkit.model.loss import IGNORE_INDEX
from slmkit.train.distributed import unwrap


def token_logps(model, ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Log-prob of each scored label [rows, width] float32 (0 where labels are -100). ids, labels: [rows, width],
    labels already shifted (labels[:, t] is the token after ids[:, t])."""
    return logps_from_hidden(model, model(ids, hidden_only=True).hidden, labels)


def logps_from_hidden(model, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """token_logps from final hidden states [rows, width, d_model] already computed (PPO reads values from them too)."""
    mask = labels != IGNORE_INDEX
    logits = unwrap(model).logits(hidden[mask]).float()  # [scored tokens, vocab]
    scored = logits.log_softmax(-1).gather(-1, labels[mask].unsqueeze(-1)).squeeze(-1)
    out = torch.zeros(labels.shape, dtype=torch.float32, device=labels.device)
    return out.masked_scatter(mask, scored)


def completion_logps(model, ids: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed log-prob of the scored labels per row [rows] float32, scored tokens per row [rows]).
    Every row must score at least one token (preference_batches checks it)."""
    return token_logps(model, ids, labels).sum(-1), (labels != IGNORE_INDEX).sum(-1)


def pair_logps(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(chosen logps, rejected logps, chosen token counts, rejected token counts), [pairs] each."""
    width = int(torch.maximum(batch["chosen_length"], batch["rejected_length"]).max())
    ids = torch.cat([batch["chosen_input_ids"][:, :width], batch["rejected_input_ids"][:, :width]])
    labels = torch.cat([batch["chosen_labels"][:, :width], batch["rejected_labels"][:, :width]])
    logps, counts = completion_logps(model, ids, labels)
    pairs = batch["chosen_input_ids"].shape[0]
    return logps[:pairs], logps[pairs:], counts[:pairs], counts[pairs:]
