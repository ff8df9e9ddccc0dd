"""AdamW with the usual parameter groups: weight decay on matrices, none on norms, biases and embeddings.

    optimizer = build_optimizer(model, cfg.train, device)

Decay pulls weights towards zero; for gains (norm weights), offsets (biases) and lookup tables
(embeddings, whose rows see few gradient updates) that only hurts, as nanoGPT and most recipes note.
A tied output head shares the embedding tensor and so is not decayed either.
"""

from __future__ import annotations

import torch
from torch import nn


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: decayed matrices and everything else; each tensor once (tied weights share one)."""
    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, no_decay, seen = [], [], set()
    for name, param in model.named_parameters():
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        if param.ndim < 2 or id(param) in embedding_ids or name.endswith(".bias"):
            no_decay.append(param)
        else:
            decay.append(param)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, train_cfg, device: torch.device) -> torch.optim.Optimizer:
    """torch.optim.AdamW, fused where the device supports it (CUDA, CPU in recent torch), else foreach."""
    groups = parameter_groups(model, train_cfg.weight_decay)
    kwargs = dict(lr=train_cfg.lr, betas=(train_cfg.beta1, train_cfg.beta2), eps=train_cfg.eps)
    if train_cfg.fused_optimizer:
        try:
            return torch.optim.AdamW(groups, fused=True, **kwargs)
        except (RuntimeError, TypeError, ValueError):
            # e.g. DTensor parameters (FSDP2) on a backend without fused kernels, or an old torch
            return torch.optim.AdamW(groups, foreach=True, **kwargs)
    return torch.optim.AdamW(groups, foreach=False, **kwargs)
