"""`TrainConfig` (the `train:` section) and `RunConfig` (model + data + train), loaded from one YAML recipe.

    cfg = load_run_config("configs/demo.yaml", ["train.max_steps=200", "model.n_layers=2"])

The `model:` section is a `ModelConfig`; it may name a preset (`preset: tiny`) whose fields fill in
what the section leaves out, and `vocab_size` defaults to the prepared data's tokenizer. The `data:`
section is the `DataConfig` of `slm prepare`: training reads its `out_dir`, and prepares it first
when `train.prepare_if_missing` is set. The resolved config (preset expanded) is what a run saves.

`read_recipe` reads the file once and checks every section; the data's vocabulary is applied to the
result afterwards (`Recipe.for_data`), so `slm train` can prepare the data in between.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Literal

from slmkit.config import apply_overrides, from_dict, read_yaml
from slmkit.data import DataConfig, manifest_exists, read_manifest
from slmkit.errors import ConfigError
from slmkit.train.mesh import parse_mesh
from slmkit.model.config import ModelConfig
from slmkit.model.presets import preset

DEFAULT_PROMPTS = ["Once upon a time", "The little dog", "One day, a girl named Lily"]


@dataclass
class TrainConfig:
    out_dir: str = "runs/train"  # the run directory: checkpoints, metrics, plots, final model
    seed: int = 0
    device: str = "auto"  # auto (cuda > mps > cpu) | cpu | cuda | cuda:N | mps

    # --- batch: one optimizer step sees batch_size * grad_accum * world_size sequences of seq_len tokens ---
    batch_size: int = 8  # micro-batch per process
    grad_accum: int = 1
    seq_len: int = 256
    max_steps: int = 1000  # optimizer steps
    window_start: Literal["random", "document"] = "random"  # random: windows begin at any token; document:
    # each window is whole documents drawn at random (each after its end-of-text), the last one cut
    max_minutes: float | None = None  # stop (with a checkpoint) after this much training time
    # with max_minutes: the schedule follows the larger of step progress and time progress, so warmup and
    # decay complete by the deadline on a slower (or busier) machine too; lr then depends on timing, so such
    # runs resume closely but not bitwise
    time_schedule: bool = False

    # --- optimizer (torch AdamW; no weight decay on norms, biases and embeddings) ---
    optimizer: Literal["adamw", "muon"] = "adamw"  # muon: torch.optim.Muon for the blocks' matrices, AdamW
    # for the rest (embeddings, head, norms, biases)
    lr: float = 1e-3
    min_lr: float | None = None  # absolute floor of the decay; None -> lr * min_lr_ratio
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping (the norm is still logged)
    fused_optimizer: bool = True  # torch's fused (or foreach) AdamW kernels where available
    muon_lr: float = 0.02  # peak lr of the Muon matrices (the schedule scales it with lr)
    muon_momentum: float = 0.95
    embed_lr: float | None = None  # peak lr of the embeddings (None -> lr); a tied head shares it
    head_lr: float | None = None  # peak lr of an untied output head (None -> lr)

    # --- schedule, stepped once per optimizer step ---
    schedule: Literal["cosine", "wsd", "constant"] = "cosine"
    warmup_steps: int = 100
    decay_fraction: float = 0.2  # wsd: share of max_steps spent decaying at the end

    # --- precision and memory ---
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "fp32"  # bf16/fp16: autocast over fp32 master weights;
    # auto: bf16 where the device computes it natively (CUDA with bf16, CPUs with AMX / AVX512-BF16), else fp32
    gradient_checkpointing: bool = False
    loss_chunk_size: int | None = None  # compute the loss this many positions at a time (big vocabularies)
    compile: bool = False  # torch.compile the model (slow to start: ~35 s per graph on a small CPU)
    tf32: bool = True  # TF32 matmuls on CUDA
    gpu_memory_fraction: float | None = None  # cap this process's share of GPU memory (0, 1]

    # --- robustness ---
    max_bad_steps: int = 20  # stop (with a checkpoint) after this many non-finite steps in a row

    # --- distributed (under torchrun) ---
    parallel: Literal["ddp", "fsdp", "tp", "pp"] = "ddp"  # ddp | fsdp: every process a data-parallel replica;
    # tp | pp: shorthand for train.mesh="tp=WORLD_SIZE" | "pp=WORLD_SIZE"
    mesh: str | None = None  # e.g. "dp=2,tp=2" or "pp=2,dp=2": degrees of dp, pp, tp multiplying to WORLD_SIZE
    # (train/mesh.py); with tp or pp in it, the dp dimension shards with FSDP2
    sequence_parallel: bool = True  # tp: norms and residuals split along the sequence between the matmuls
    pp_schedule: Literal["gpipe", "1f1b", "interleaved"] = "1f1b"  # pp: the micro-batches are train.grad_accum
    backend: Literal["auto", "nccl", "gloo"] = "auto"  # auto: nccl on CUDA, gloo on CPU

    # --- checkpoints ---
    checkpoint_every: int = 500  # optimizer steps; 0 = only at the end (and on SIGINT/SIGTERM)
    keep_last: int = 2
    keep_best: bool = True  # also keep the checkpoint with the lowest validation loss
    resume: str = "none"  # none | auto (latest valid checkpoint in out_dir, else start) | a checkpoint path
    overwrite: bool = False  # a fresh start in an out_dir with checkpoints deletes them (else: an error)
    prepare_if_missing: bool = True  # run `slm prepare` on the data section when its shards are missing

    # --- evaluation ---
    eval_every: int = 250  # 0 = only at the end
    eval_batch_size: int | None = None  # None -> batch_size
    eval_windows: int | None = None  # evaluate the first N validation rows of seq_len tokens; None -> all
    sample_prompts: list[str] = field(default_factory=lambda: list(DEFAULT_PROMPTS))
    sample_tokens: int = 64
    sample_temperature: float = 0.8  # 0 = greedy
    sample_top_k: int | None = 50

    # --- logging and tracking ---
    log_every: int = 10
    progress: bool = True
    tensorboard: bool = True  # when tensorboard is installed
    wandb_project: str | None = None  # log to Weights & Biases (needs `pip install wandb`)
    wandb_run_name: str | None = None
    plots: bool = True  # loss and lr curves as PNG at the end (matplotlib)
    peak_flops: float | None = None  # per device, for MFU; None -> table (GPUs) or a measurement (CPU)

    def __post_init__(self) -> None:
        positive = ("batch_size", "grad_accum", "seq_len", "max_steps", "max_bad_steps", "log_every")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("warmup_steps", "checkpoint_every", "eval_every", "keep_last", "sample_tokens"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("lr", "muon_lr", "embed_lr", "head_lr"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if not 0.0 <= self.muon_momentum < 1.0:
            raise ValueError(f"muon_momentum must be in [0, 1), got {self.muon_momentum}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.min_lr is not None and not 0.0 <= self.min_lr <= self.lr:
            raise ValueError(
                f"min_lr ({self.min_lr:g}) is above lr ({self.lr:g}): the decay would raise the learning rate; "
                "set min_lr <= lr (or use min_lr_ratio)"
            )
        if not 0.0 <= self.decay_fraction <= 1.0:
            raise ValueError(f"decay_fraction must be in [0, 1], got {self.decay_fraction}")
        if self.warmup_steps > self.max_steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) is longer than max_steps ({self.max_steps})")
        if self.grad_clip < 0 or self.weight_decay < 0:
            raise ValueError("grad_clip and weight_decay must be >= 0")
        if self.gpu_memory_fraction is not None and not 0.0 < self.gpu_memory_fraction <= 1.0:
            raise ValueError(f"gpu_memory_fraction must be in (0, 1], got {self.gpu_memory_fraction}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ValueError(f"max_minutes must be > 0, got {self.max_minutes}")
        if self.time_schedule and self.max_minutes is None:
            raise ValueError("time_schedule needs max_minutes (the deadline the schedule runs to)")
        if self.mesh is not None:
            parse_mesh(self.mesh)  # a malformed mesh fails with the config, before any process group
        if self.sample_temperature < 0:
            raise ValueError(f"sample_temperature must be >= 0, got {self.sample_temperature}")

    @property
    def floor_lr(self) -> float:
        """The learning rate the decay ends at."""
        return self.min_lr if self.min_lr is not None else self.lr * self.min_lr_ratio


@dataclass
class RunConfig:
    """Everything a training run needs; saved resolved as `config.yaml` in the run directory."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class Recipe:
    """A recipe read once: every section typed and checked (`config`), and whether the model's
    vocab_size is left to the data (the model section does not set it; a preset's does not count)."""

    config: RunConfig
    vocab_from_data: bool

    def for_data(self, vocab_size: int | None) -> RunConfig:
        """The run config with model.vocab_size = `vocab_size` (the prepared data's tokenizer's) where
        the recipe leaves it to the data; unchanged when `vocab_size` is None (no data yet)."""
        if vocab_size is None or not self.vocab_from_data:
            return self.config
        model = dataclasses.replace(self.config.model, vocab_size=vocab_size)
        return dataclasses.replace(self.config, model=model)


def resolve_model_section(section: dict | None) -> dict:
    """Expand `preset: NAME` into the preset's fields (the section's own keys win)."""
    section = dict(section or {})
    name = section.pop("preset", None)
    base = preset(str(name)).to_dict() if name is not None else {}
    return {**base, **section}


def recipe_from_dict(data: dict) -> Recipe:
    data = dict(data)
    unknown = sorted(set(data) - {"model", "data", "train"})
    if unknown:
        raise ConfigError(f"unknown config section '{unknown[0]}' (sections: model, data, train)")
    if not isinstance(data.get("model", {}), (dict, type(None))):
        raise ConfigError("model: expected a mapping (e.g. preset: tiny)")
    vocab_from_data = "vocab_size" not in (data.get("model") or {})
    data["model"] = resolve_model_section(data.get("model"))
    return Recipe(from_dict(RunConfig, data), vocab_from_data)


def read_recipe(path: str | os.PathLike | None = None, overrides: list[str] = ()) -> Recipe:
    """Read a recipe (the file, once), apply dotted overrides, expand the model preset, check every section."""
    data = read_yaml(path) if path else {}
    return recipe_from_dict(apply_overrides(data, list(overrides)))


def prepared_vocab_size(data_dir: str | os.PathLike) -> int | None:
    """The vocabulary of the data prepared in `data_dir`; None when it is not prepared yet."""
    return read_manifest(data_dir).vocab_size if manifest_exists(data_dir) else None


def run_config_from_dict(data: dict) -> RunConfig:
    """A recipe given as a dict, resolved as `load_run_config` resolves a file."""
    recipe = recipe_from_dict(data)
    return recipe.for_data(prepared_vocab_size(recipe.config.data.out_dir))


def load_run_config(path: str | os.PathLike | None = None, overrides: list[str] = ()) -> RunConfig:
    """Read a recipe, apply dotted overrides, expand the model preset, validate every section; the
    model's vocab_size defaults to the tokenizer of the data when that is already prepared."""
    recipe = read_recipe(path, overrides)
    return recipe.for_data(prepared_vocab_size(recipe.config.data.out_dir))
