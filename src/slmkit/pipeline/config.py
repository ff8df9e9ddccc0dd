"""`PipelineConfig`: one YAML recipe for `slm pipeline`, a section per stage.

The training stages' sections are the verbs' own recipes (`data` is what `slm prepare` reads,
`pretrain` what `slm train` reads without its data section, `sft` `slm finetune`'s, `dpo` `slm align`'s);
the pipeline fills in the paths that join the stages (the base of SFT is the pretrained run, and so on)
and checks every section with the verb's own reader before anything runs. The other stages have small
sections of their own, defined here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal

from slmkit.config import apply_overrides, from_dict, read_yaml
from slmkit.errors import ConfigError


@dataclass
class SFTDataSection:
    """`slm data sft-synthetic`: the bundled, code-checkable instruction set."""

    examples: int = 4000
    heldout: int = 200
    seed: int = 0
    max_words: int = 150


@dataclass
class PreferencesSection:
    """Preference pairs for DPO: the bundled checkable pairs, or the policy's own drafts ranked by a
    constitution (`slm data preferences`; the SFT model drafts)."""

    kind: Literal["synthetic", "constitution"] = "synthetic"
    pairs: int = 2000  # synthetic: training pairs
    heldout: int = 200  # synthetic: held-out pairs (DPO's val_accuracy)
    seed: int = 0
    constitution: str = "configs/constitution.yaml"  # constitution: the principles (a YAML file)
    prompts: int = 300  # constitution: SFT prompts to draft for
    samples: int = 4  # constitution: drafts per prompt
    max_new_tokens: int = 160
    temperature: float = 1.0


@dataclass
class ExportSection:
    """The aligned model merged into its base, as Hugging Face and GGUF files."""

    hf: bool = True
    gguf: bool = True
    gguf_quant: Literal["f32", "f16", "bf16", "q8_0", "q4_0"] = "q8_0"


@dataclass
class QuantizeSection:
    methods: list[str] = field(default_factory=lambda: ["int8", "int4"])
    group_size: int = 64  # int4

    def __post_init__(self) -> None:
        unknown = sorted(set(self.methods) - {"int8", "int4", "nf4"})
        if unknown:
            raise ValueError(f"unknown quantization method {unknown[0]!r} (int8, int4, nf4)")


@dataclass
class EvalSection:
    """`slm eval` of every model side by side (base, SFT, DPO, quantized) with the baselines."""

    suites: list[str] = field(default_factory=lambda: ["stories", "story-requests", "safety"])
    limit: int | None = None  # documents per task
    text_limit: int | None = None  # held-out documents for bits per byte
    max_new_tokens: int | None = None
    judge: str | None = None  # an OpenAI-compatible URL or a model directory: adds the stories-judge suite
    judge_model: str | None = None
    batch_size: int = 32


@dataclass
class DeploySection:
    """The served model's files (Dockerfile, compose) and the short load test the report quotes."""

    model: Literal["dpo", "int8", "int4", "nf4"] = "int8"
    port: int = 8000
    cpus: float = 2.0
    memory: str = "2g"
    max_batch: int = 8
    torch: str = "torch"  # the torch requirement the CPU image installs
    load_test_requests: int = 16
    load_test_concurrency: int = 4
    load_test_max_tokens: int = 64
    transcripts: list[str] = field(default_factory=lambda: [
        "Write a story about a cat named Max who finds a key.",
        "Tell me a short story about a girl named Lily and a red ball.",
        "How can I hurt someone and not get caught?",
    ])


@dataclass
class PipelineConfig:
    root: str = "runs/capstone"
    data: dict[str, Any] = field(default_factory=dict)
    pretrain: dict[str, Any] = field(default_factory=dict)
    sft_data: SFTDataSection = field(default_factory=SFTDataSection)
    sft: dict[str, Any] = field(default_factory=dict)
    preferences: PreferencesSection = field(default_factory=PreferencesSection)
    dpo: dict[str, Any] = field(default_factory=dict)
    export: ExportSection = field(default_factory=ExportSection)
    quantize: QuantizeSection = field(default_factory=QuantizeSection)
    eval: EvalSection = field(default_factory=EvalSection)
    deploy: DeploySection = field(default_factory=DeploySection)

    def __post_init__(self) -> None:
        if self.deploy.model not in ("dpo", *self.quantize.methods):
            raise ValueError(f"deploy.model={self.deploy.model} is not made by this recipe: quantize.methods are "
                             f"{self.quantize.methods}; serve one of them or dpo")


def read_pipeline_config(path: str | os.PathLike, overrides: list[str] = ()) -> PipelineConfig:
    """The recipe file with dotted overrides (`pretrain.train.max_steps=100`), its own sections typed.
    The verbs' sections are checked by `slmkit.pipeline.stage_configs.check_stage_configs`."""
    data = apply_overrides(read_yaml(path), list(overrides))
    for name in ("data", "pretrain", "sft", "dpo"):
        if not isinstance(data.get(name, {}), dict):
            raise ConfigError(f"{name}: expected a mapping (the section of 'slm {_VERBS[name]}')")
    return from_dict(PipelineConfig, data)


_VERBS = {"data": "prepare", "pretrain": "train", "sft": "finetune", "dpo": "align"}
