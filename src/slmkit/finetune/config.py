"""`FinetuneConfig`: one YAML recipe for full, LoRA and QLoRA chat fine-tuning.

    cfg = read_finetune_config("configs/sft-lora.yaml", ["base=runs/demo", "train.lr=1e-4"])

Sections: `base` (any model directory `slm` loads: a run, an HF export, an HF hub snapshot), `method`
(full | lora | qlora), `lora:` (LoraConfig; ignored by full), `data:` (SFTDataConfig) and `train:`
(the Trainer's own TrainConfig: batch, schedule, precision, checkpoints, resume, everything).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

from slmkit.config import apply_overrides, from_dict, read_yaml
from slmkit.errors import ConfigError
from slmkit.finetune.lora import LoraConfig
from slmkit.train.config import TrainConfig

METHODS = ("full", "lora", "qlora")


@dataclass
class SFTDataConfig:
    train: str = "data/sft.jsonl"  # a .jsonl/.json file of `messages` or `prompt`/`completion` records, or hf:NAME
    eval: str | None = None  # a held-out file; None -> the last eval_fraction of train
    eval_fraction: float = 0.05
    limit: int | None = None  # use the first N training examples
    pack: bool = True  # several examples per row, boundaries kept (positions restart, no cross attention)

    def __post_init__(self) -> None:
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ValueError(f"data.eval_fraction must be in [0, 1), got {self.eval_fraction}")


@dataclass
class FinetuneConfig:
    base: str = ""
    method: Literal["full", "lora", "qlora"] = "lora"
    lora: LoraConfig = field(default_factory=LoraConfig)
    data: SFTDataConfig = field(default_factory=SFTDataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def finetune_config_from_dict(data: dict) -> FinetuneConfig:
    unknown = sorted(set(data) - {"base", "method", "lora", "data", "train"})
    if unknown:
        raise ConfigError(f"unknown config section '{unknown[0]}' (sections: base, method, lora, data, train)")
    cfg = from_dict(FinetuneConfig, data)
    if not cfg.base:
        raise ConfigError("no base model: add base=PATH (a run directory or a Hugging Face model directory)")
    if cfg.method not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {cfg.method!r}")
    return cfg


def read_finetune_config(path: str | os.PathLike | None, overrides: list[str] = ()) -> FinetuneConfig:
    data = read_yaml(path) if path else {}
    return finetune_config_from_dict(apply_overrides(data, list(overrides)))
