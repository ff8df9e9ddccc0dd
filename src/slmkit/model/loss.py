"""Next-token cross-entropy, optionally in chunks so [batch, seq, vocab] logits never exist at once."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

IGNORE_INDEX = -100  # targets with this value (padding, prompt tokens in SFT) add nothing to the loss


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over non-ignored targets. logits [..., vocab] (any float dtype), targets [...]."""
    return F.cross_entropy(logits.float().flatten(0, -2), targets.flatten(), ignore_index=IGNORE_INDEX)


def chunked_cross_entropy(hidden: torch.Tensor, head, targets: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """The same mean loss as `cross_entropy(head(hidden), targets)`, `chunk_size` positions at a time.

    hidden: [batch, seq, d_model]; head: hidden -> logits (the decoder's `logits`); targets: [batch, seq].
    Each chunk's logits [batch, chunk, vocab] are recomputed in backward (activation checkpointing) instead of
    being kept, so peak memory holds one chunk of logits: with a 151K vocabulary that is the difference between
    gigabytes and megabytes.
    """
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, hidden.shape[1], chunk_size):
        h = hidden[:, start:start + chunk_size]
        t = targets[:, start:start + chunk_size]
        if torch.is_grad_enabled() and h.requires_grad:
            total = total + checkpoint(_summed_loss, h, head, t, use_reentrant=False)
        else:
            total = total + _summed_loss(h, head, t)
    count = (targets != IGNORE_INDEX).sum()
    return total / count  # NaN when every target is ignored, as F.cross_entropy's mean is


def _summed_loss(hidden: torch.Tensor, head, targets: torch.Tensor) -> torch.Tensor:
    logits = head(hidden).float()
    return F.cross_entropy(logits.flatten(0, -2), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")
