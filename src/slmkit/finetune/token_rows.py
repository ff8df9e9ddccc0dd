"""When chat tokens are added to a base, only their rows of the embedding (and of an untied head) learn; the
base's own rows keep their values, as PEFT's `trainable_token_indices` does.

Training the whole (tied) embedding on chat data rewrote it: in the CPU capstone the rows moved by more than
their own size (mean |change| 0.082 against a mean |value| of 0.056) and the chat model's bits per byte on plain
stories went from 0.32 to 1.21; restoring the base rows alone halved the damage. `lora.token_rows: all` trains
the whole embedding as before.
"""

from __future__ import annotations

import torch
from torch import nn


def keep_base_token_rows(model: nn.Module, base_vocab: int) -> int:
    """Zero the gradient of the embedding rows (and an untied head's) below `base_vocab`, so AdamW leaves them
    exactly as they are (zero gradients keep both moments at zero; embeddings have no weight decay). Returns the
    number of rows that learn."""
    params = [model.embed.weight]
    if model.head.weight is not model.embed.weight:
        params.append(model.head.weight)
    learning = 0
    for param in params:
        if not param.requires_grad or param.shape[0] <= base_vocab:
            continue
        mask = torch.zeros(param.shape[0], 1, dtype=param.dtype, device=param.device)
        mask[base_vocab:] = 1
        param.register_hook(lambda grad, mask=mask: grad * mask.to(grad.dtype))
        learning = param.shape[0] - base_vocab
    return learning
