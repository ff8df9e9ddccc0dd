"""The optimizer: AdamW with the usual parameter groups, or Muon for the matrices and AdamW for the rest.

    optimizer = build_optimizer(model, cfg.train, device)

AdamW: weight decay on matrices, none on norms, biases and embeddings. Decay pulls weights towards zero; for
gains (norm weights), offsets (biases) and lookup tables (embeddings, whose rows see few gradient updates) that
only hurts, as nanoGPT and most recipes note. A tied output head shares the embedding tensor and so is not
decayed either.

train.optimizer=muon (Keller Jordan's Muon as torch.optim.Muon: momentum, then the update orthogonalised by a
Newton-Schulz iteration): every 2-D weight inside the blocks (attention and MLP projections) trains with Muon
at train.muon_lr with weight decay; embeddings, the head, norms and biases stay on AdamW, as in the speedrun
recipes (modded-nanogpt). The two step as one `CombinedOptimizer`.

Learning rates per group (train.lr, muon_lr, embed_lr, head_lr) are peak values: each group carries
`lr_scale` = its peak / train.lr and the schedule writes lr(t) * lr_scale into it (schedules.set_lr), so every
group warms up and decays together. Groups with the same decay and scale are one group, so the default
settings give the two AdamW groups (decayed first) that earlier checkpoints hold.
"""

from __future__ import annotations

from collections import ChainMap

import torch
from torch import nn

from slmkit.errors import ConfigError


def parameter_groups(model: nn.Module, train_cfg) -> tuple[list[dict], list[dict]]:
    """(AdamW groups, Muon groups), each {"params", "weight_decay", "lr_scale"}; each tensor once (tied
    weights share one)."""
    t = train_cfg
    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    head = getattr(model, "head", None)
    config = getattr(model, "config", None)
    if isinstance(head, nn.Linear) and getattr(config, "tie_embeddings", False):
        embedding_ids.add(id(head.weight))  # a tied head held apart from its embedding (a pipeline's last stage)
    head_id = id(head.weight) if isinstance(head, nn.Linear) and id(head.weight) not in embedding_ids else None
    adamw: dict[tuple, dict] = {}
    muon: dict[tuple, dict] = {}
    seen: set[int] = set()
    for name, param in model.named_parameters():
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        target, decay, lr = adamw, t.weight_decay, t.lr
        if id(param) in embedding_ids:
            decay, lr = 0.0, t.embed_lr or t.lr
        elif param.ndim < 2 or name.endswith(".bias"):
            decay = 0.0
        elif id(param) == head_id:
            lr = t.head_lr or t.lr
        elif t.optimizer == "muon" and param.ndim == 2 and "blocks" in name.split("."):
            target, lr = muon, t.muon_lr
        group = target.setdefault((decay, lr), {"params": [], "weight_decay": decay, "lr_scale": lr / t.lr})
        group["params"].append(param)
    decayed_first = sorted(adamw.values(), key=lambda g: -g["weight_decay"])
    return decayed_first, list(muon.values())


class CombinedOptimizer:
    """Several torch optimizers stepped as one: the Trainer, the schedule and the fp16 scaler see their groups
    together; checkpoints save each (`optimizers`, which train/state.py hands to torch's state-dict helpers)."""

    def __init__(self, optimizers: list[torch.optim.Optimizer]):
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict]:
        return [g for o in self.optimizers for g in o.param_groups]

    @property
    def state(self) -> ChainMap:
        return ChainMap(*(o.state for o in self.optimizers))

    def step(self) -> None:
        for optimizer in self.optimizers:
            optimizer.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=set_to_none)


def build_optimizer(model: nn.Module, train_cfg, device: torch.device):
    """torch.optim.AdamW (fused where the device supports it, else foreach), or Muon + AdamW combined."""
    adamw_groups, muon_groups = parameter_groups(model, train_cfg)
    adamw = _adamw(adamw_groups, train_cfg) if adamw_groups else None
    if not muon_groups:
        return adamw
    if not hasattr(torch.optim, "Muon"):
        raise ConfigError(f"train.optimizer=muon needs torch.optim.Muon (torch >= 2.9); torch {torch.__version__} "
                          "has none: upgrade torch or use train.optimizer=adamw")
    if any(type(p).__name__ == "DTensor" for g in muon_groups for p in g["params"]):
        raise ConfigError("train.optimizer=muon orthogonalises whole matrices, and FSDP shards them: use "
                          "train.parallel=ddp with Muon (or train.optimizer=adamw with FSDP)")
    muon = torch.optim.Muon(muon_groups, lr=train_cfg.muon_lr, weight_decay=train_cfg.weight_decay,
                            momentum=train_cfg.muon_momentum)
    return CombinedOptimizer([muon] + ([adamw] if adamw is not None else []))


def _adamw(groups: list[dict], train_cfg) -> torch.optim.AdamW:
    kwargs = dict(lr=train_cfg.lr, betas=(train_cfg.beta1, train_cfg.beta2), eps=train_cfg.eps)
    if train_cfg.fused_optimizer:
        try:
            return torch.optim.AdamW(groups, fused=True, **kwargs)
        except (RuntimeError, TypeError, ValueError):
            # e.g. DTensor parameters (FSDP2) on a backend without fused kernels, or an old torch
            return torch.optim.AdamW(groups, foreach=True, **kwargs)
    return torch.optim.AdamW(groups, foreach=False, **kwargs)
