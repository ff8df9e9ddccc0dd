"""The capstone's stages, in order: what each runs, what it reads, what it owns and when it is done.

Each stage is an existing `slm` verb (run as its own process, so a stage's memory is freed and its
log is its own) or, for deploy and report, a function of this package. Paths are relative to the run
root. A stage owns its directories: they are removed before it runs afresh and kept when it resumes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from slmkit.config import to_dict
from slmkit.pipeline.config import PipelineConfig
from slmkit.pipeline.stage_configs import CONFIG_DIR, PREFS_TRAIN, SFT_HELDOUT, SFT_TRAIN


@dataclass(frozen=True)
class Stage:
    name: str
    summary: str
    needs: tuple[str, ...]  # upstream stages: their fingerprints enter this one's
    owns: tuple[str, ...]  # directories (under the root) this stage writes
    done_when: Callable[[PipelineConfig], list[str]]  # files that exist once it finished
    section: Callable[[PipelineConfig, dict], Any]  # what decides its output (hashed)
    commands: Callable[[PipelineConfig], list[list[str]]] | None = None  # `slm` argument lists
    in_process: str | None = None  # or: the name of a function in slmkit.pipeline.actions
    estimate_s: Callable[[PipelineConfig], float | None] = field(default=lambda cfg: None)
    run_dir: str | None = None  # a training stage's run directory: its run_status.json says whether it finished


def _minutes(section: dict) -> float | None:
    minutes = (section.get("train") or {}).get("max_minutes")
    return 60.0 * float(minutes) if minutes else None


def served_source(cfg: PipelineConfig) -> str:
    """The model directory the deploy stage serves."""
    return "export/merged" if cfg.deploy.model == "dpo" else f"quantize/{cfg.deploy.model}"


def evaluated_models(cfg: PipelineConfig) -> list[tuple[str, str]]:
    """(name in the report, directory) of every model the evaluation compares."""
    return [("base", "pretrain"), ("sft", "sft"), ("dpo", "dpo")] + [(m, f"quantize/{m}") for m in cfg.quantize.methods]


def _preference_commands(cfg: PipelineConfig) -> list[list[str]]:
    p = cfg.preferences
    if p.kind == "synthetic":
        return [["data", "preferences-synthetic", "--out", PREFS_TRAIN, "--pairs", str(p.pairs),
                 "--heldout", str(p.heldout), "--seed", str(p.seed)]]
    return [["data", "preferences", "--constitution", p.constitution, "--policy", "sft", "--prompts", SFT_TRAIN,
             "--limit", str(p.prompts), "--samples", str(p.samples), "--max-new-tokens", str(p.max_new_tokens),
             "--temperature", str(p.temperature), "--seed", str(p.seed), "--out", PREFS_TRAIN]]


def _export_commands(cfg: PipelineConfig) -> list[list[str]]:
    commands = [["export", "dpo", "--merge", "--out", "export/merged"]]
    if cfg.export.hf:
        commands.append(["export", "export/merged", "--format", "hf", "--out", "export/hf"])
    if cfg.export.gguf:
        commands.append(["export", "export/merged", "--format", "gguf", "--quant", cfg.export.gguf_quant,
                         "--out", "export/model.gguf"])
    return commands


def _quantize_commands(cfg: PipelineConfig) -> list[list[str]]:
    commands = []
    for method in cfg.quantize.methods:
        command = ["quantize", "export/merged", "--method", method, "--out", f"quantize/{method}", "--no-speed"]
        if method == "int4":
            command += ["--group-size", str(cfg.quantize.group_size)]
        commands.append(command)
    return commands


def _eval_commands(cfg: PipelineConfig) -> list[list[str]]:
    e = cfg.eval
    command = ["eval", *(f"{name}={path}" for name, path in evaluated_models(cfg)), "--data", "data",
               "--report", "eval", "--batch-size", str(e.batch_size), "--no-progress"]
    for suite in e.suites + (["stories-judge"] if e.judge and "stories-judge" not in e.suites else []):
        command += ["--suite", suite]
    for flag, value in (("--limit", e.limit), ("--text-limit", e.text_limit), ("--max-new-tokens", e.max_new_tokens),
                        ("--judge", e.judge), ("--judge-model", e.judge_model)):
        if value is not None:
            command += [flag, str(value)]
    return [command]


def _recipe(name: str) -> Callable[[PipelineConfig, dict], Any]:
    return lambda cfg, recipes: recipes[name]


STAGES: list[Stage] = [
    Stage("data", "curate the sources, train the tokenizer, write token shards (slm prepare)", (), ("data", "tokenizer"),
          lambda cfg: ["data/manifest.json", "tokenizer/tokenizer.json"], _recipe("data"),
          commands=lambda cfg: [["prepare", f"{CONFIG_DIR}/data.yaml"]]),
    Stage("pretrain", "pretrain the decoder (slm train)", ("data",), ("pretrain",),
          lambda cfg: ["pretrain/model.safetensors"], _recipe("pretrain"),
          commands=lambda cfg: [["train", f"{CONFIG_DIR}/pretrain.yaml", "train.resume=auto"]],
          estimate_s=lambda cfg: _minutes(cfg.pretrain), run_dir="pretrain"),
    Stage("sft-data", "write the instruction set (slm data sft-synthetic)", (), ("sft-data",),
          lambda cfg: [SFT_TRAIN, SFT_HELDOUT], lambda cfg, recipes: to_dict(cfg.sft_data),
          commands=lambda cfg: [["data", "sft-synthetic", "--out", SFT_TRAIN, "--examples", str(cfg.sft_data.examples),
                                 "--heldout", str(cfg.sft_data.heldout), "--seed", str(cfg.sft_data.seed),
                                 "--max-words", str(cfg.sft_data.max_words)]]),
    Stage("sft", "chat fine-tuning, loss on assistant tokens (slm finetune)", ("pretrain", "sft-data"), ("sft",),
          lambda cfg: ["sft/adapter.safetensors" if cfg.sft.get("method", "lora") != "full" else "sft/model.safetensors"],
          _recipe("sft"), commands=lambda cfg: [["finetune", f"{CONFIG_DIR}/sft.yaml", "train.resume=auto"]],
          estimate_s=lambda cfg: _minutes(cfg.sft), run_dir="sft"),
    Stage("preferences", "preference pairs for DPO (slm data)", ("sft", "sft-data"), ("preferences",),
          lambda cfg: [PREFS_TRAIN], lambda cfg, recipes: to_dict(cfg.preferences), commands=_preference_commands),
    Stage("dpo", "preference alignment (slm align)", ("sft", "preferences"), ("dpo",),
          lambda cfg: ["dpo/adapter.safetensors" if cfg.dpo.get("method", "lora") != "full" else "dpo/model.safetensors"],
          _recipe("dpo"), commands=lambda cfg: [["align", f"{CONFIG_DIR}/dpo.yaml", "train.resume=auto"]],
          estimate_s=lambda cfg: _minutes(cfg.dpo), run_dir="dpo"),
    Stage("export", "merge the adapter; Hugging Face and GGUF files (slm export)", ("dpo",), ("export",),
          lambda cfg: ["export/merged/model.safetensors"] + (["export/hf/config.json"] if cfg.export.hf else [])
          + (["export/model.gguf"] if cfg.export.gguf else []),
          lambda cfg, recipes: to_dict(cfg.export), commands=_export_commands),
    Stage("quantize", "int8 / int4 checkpoints of the aligned model (slm quantize)", ("export",), ("quantize",),
          lambda cfg: [f"quantize/{m}/config.json" for m in cfg.quantize.methods],
          lambda cfg, recipes: to_dict(cfg.quantize), commands=_quantize_commands),
    Stage("eval", "every model against the baselines (slm eval)", ("pretrain", "sft", "dpo", "quantize"), ("eval",),
          lambda cfg: ["eval/results.json"], lambda cfg, recipes: to_dict(cfg.eval), commands=_eval_commands),
    Stage("deploy", "Dockerfiles, compose files, a served check and a load test", ("export", "quantize"), ("deploy",),
          lambda cfg: ["deploy/serving.json"], lambda cfg, recipes: to_dict(cfg.deploy), in_process="deploy"),
    Stage("report", "report.md and report.html", ("data", "pretrain", "sft", "preferences", "dpo", "eval", "deploy"),
          ("report",), lambda cfg: ["report/report.md", "report/report.html"], lambda cfg, recipes: {},
          in_process="report"),
]

STAGE_NAMES = [s.name for s in STAGES]
