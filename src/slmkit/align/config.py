"""`AlignConfig` (DPO and its loss variants: full, LoRA or QLoRA) and `RewardConfig` (a Bradley-Terry reward model).

    cfg = read_align_config("configs/dpo-lora.yaml", ["policy=runs/demo-sft", "dpo.beta=0.2"])
    cfg = read_reward_config("configs/reward.yaml", ["base=runs/demo-sft"])
    cfg = read_rl_config("configs/grpo.yaml", ["policy=runs/demo-sft", "reward=rules:story"])

Sections: `policy` (the model to align: any model directory `slm` loads, or a LoRA adapter directory such as an
`slm finetune` run, whose adapter then trains on), `method` (full | lora | qlora), `lora:` (a fresh adapter's
LoraConfig), `dpo:` (DPOSettings: beta, loss_type, label_smoothing, reference), `data:` (PreferenceDataConfig)
and `train:` (the Trainer's own TrainConfig: batch in pairs, schedule, precision, checkpoints, resume).
A reward recipe has `base` (a model directory, or an adapter directory merged into its base), `reward:`
(RewardSettings), `data:` and `train:`; every weight trains, with the new scalar head.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

from slmkit.align.dpo_objective import DPOSettings
from slmkit.align.grpo_objective import GRPOSettings
from slmkit.align.ppo_objective import PPOSettings
from slmkit.align.reward_objective import RewardSettings
from slmkit.config import apply_overrides, from_dict, read_yaml
from slmkit.errors import ConfigError
from slmkit.finetune.config import METHODS
from slmkit.finetune.lora import LoraConfig
from slmkit.train.config import TrainConfig

SECTIONS = ("policy", "method", "lora", "dpo", "data", "train")
REWARD_SECTIONS = ("base", "reward", "data", "train")
RL_SECTIONS = ("policy", "reward", "algorithm", "method", "lora", "grpo", "ppo", "data", "train")


@dataclass
class PreferenceDataConfig:
    train: str = "data/prefs.jsonl"  # .jsonl/.json of {prompt, chosen, rejected} records, or hf:NAME[:CONFIG]
    eval: str | None = None  # held-out pairs; None -> the last eval_fraction of train
    eval_fraction: float = 0.05
    limit: int | None = None  # use the first N training pairs

    def __post_init__(self) -> None:
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ValueError(f"data.eval_fraction must be in [0, 1), got {self.eval_fraction}")


@dataclass
class AlignConfig:
    policy: str = ""
    method: Literal["full", "lora", "qlora"] = "lora"
    lora: LoraConfig = field(default_factory=LoraConfig)
    dpo: DPOSettings = field(default_factory=DPOSettings)
    data: PreferenceDataConfig = field(default_factory=PreferenceDataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def read_recipe(cls, sections: tuple[str, ...], model_key: str, path: str | os.PathLike | None,
                overrides: list[str] = ()):
    """A `cls` recipe from YAML + dotted overrides, its sections checked and its model (`model_key`) given."""
    data = apply_overrides(read_yaml(path) if path else {}, list(overrides))
    unknown = sorted(set(data) - set(sections))
    if unknown:
        raise ConfigError(f"unknown config section '{unknown[0]}' (sections: {', '.join(sections)})")
    cfg = from_dict(cls, data)
    if not getattr(cfg, model_key):
        raise ConfigError(f"no {'policy' if model_key == 'policy' else 'base'} model: add {model_key}=PATH (an SFT "
                          "run, its adapter, or a Hugging Face model directory)")
    if getattr(cfg, "method", "full") not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {cfg.method!r}")
    return cfg


def read_align_config(path: str | os.PathLike | None, overrides: list[str] = ()) -> AlignConfig:
    return read_recipe(AlignConfig, SECTIONS, "policy", path, overrides)


@dataclass
class RewardConfig:
    base: str = ""
    reward: RewardSettings = field(default_factory=RewardSettings)
    data: PreferenceDataConfig = field(default_factory=PreferenceDataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def read_reward_config(path: str | os.PathLike | None, overrides: list[str] = ()) -> RewardConfig:
    return read_recipe(RewardConfig, REWARD_SECTIONS, "base", path, overrides)


@dataclass
class PromptDataConfig:
    train: str = "data/sft.jsonl"  # .jsonl/.json of {prompt} or {messages} records (with a `check` for rules:story)
    eval: str | None = None  # held-out prompts (mean greedy reward at each evaluation); None: no evaluation
    limit: int | None = None
    eval_limit: int | None = 64  # held-out prompts scored per evaluation


@dataclass
class RLConfig:
    policy: str = ""
    reward: str = "rules:story"  # rules:NAME[+NAME...] | python:MODULE:FUNCTION | a reward model directory
    algorithm: Literal["grpo", "ppo"] = "grpo"
    method: Literal["full", "lora", "qlora"] = "lora"
    lora: LoraConfig = field(default_factory=LoraConfig)
    grpo: GRPOSettings = field(default_factory=GRPOSettings)
    ppo: PPOSettings = field(default_factory=PPOSettings)
    data: PromptDataConfig = field(default_factory=PromptDataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def read_rl_config(path: str | os.PathLike | None, overrides: list[str] = ()) -> RLConfig:
    return read_recipe(RLConfig, RL_SECTIONS, "policy", path, overrides)
