"""Learning-rate schedules as pure functions of the optimizer step (never of the micro-batch).

    schedule = make_schedule(cfg.train)        # step -> lr
    lr = schedule(step)                        # step counts optimizer steps from 0

- cosine:   linear warmup from lr/warmup to lr over `warmup` steps, then half a cosine down to `min_lr`
            at `total` steps (and `min_lr` after).
- wsd:      warmup-stable-decay (MiniCPM): warmup, hold `lr`, then decay linearly to `min_lr` over the
            last `decay_fraction` of the steps. A run can be extended from any stable-phase checkpoint.
- constant: warmup, then `lr` forever.

Being functions of the step, schedules need no state of their own in a checkpoint: resuming at step
s gives the same rate as never stopping. `LambdaLR`-style objects were the book's bug (stepped per
micro-batch, so warmup ended gradient-accumulation times too early).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from slmkit.errors import ConfigError


@dataclass(frozen=True)
class Schedule:
    kind: str
    lr: float
    min_lr: float
    warmup: int
    total: int
    decay_fraction: float = 0.2

    def __post_init__(self) -> None:
        if self.kind not in ("cosine", "wsd", "constant"):
            raise ConfigError(f"unknown schedule {self.kind!r} (cosine, wsd, constant)")
        if self.min_lr > self.lr:
            raise ConfigError(f"min_lr ({self.min_lr:g}) is above lr ({self.lr:g}); the decay would raise the rate")
        if self.warmup < 0 or self.total <= 0:
            raise ConfigError("warmup must be >= 0 and total steps > 0")

    def __call__(self, step: int) -> float:
        """The learning rate for optimizer step `step` (0-based)."""
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        if self.kind == "constant":
            return self.lr
        if self.kind == "cosine":
            span = max(self.total - self.warmup, 1)
            progress = min((step - self.warmup) / span, 1.0)
            return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + math.cos(math.pi * progress))
        # wsd
        decay_steps = max(int(round(self.total * self.decay_fraction)), 0)
        decay_start = self.total - decay_steps
        if step < decay_start or decay_steps == 0:
            return self.lr
        progress = min((step - decay_start) / decay_steps, 1.0)
        return self.lr + (self.min_lr - self.lr) * progress


def make_schedule(train_cfg) -> Schedule:
    """The schedule a `TrainConfig` describes."""
    return Schedule(train_cfg.schedule, train_cfg.lr, train_cfg.floor_lr, train_cfg.warmup_steps,
                    train_cfg.max_steps, train_cfg.decay_fraction)


def set_lr(optimizer, lr: float) -> None:
    """Write `lr` into every parameter group (groups may scale it with an `lr_scale` entry)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
