"""The verbs' recipes a pipeline writes under ROOT/configs/, and their check before anything runs.

Every path is relative to the run root (the stages run with it as their working directory), so a
run root can move and its stages' fingerprints do not depend on where it lies. Local data files
named in the recipe are made absolute, from the directory `slm pipeline` was started in.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import glob
import os
from pathlib import Path

import yaml

from slmkit.align.config import read_align_config
from slmkit.config import from_dict, read_yaml
from slmkit.data.config import DataConfig
from slmkit.data.sources import hub_reachable
from slmkit.errors import ConfigError
from slmkit.fileio import write_json_atomic, write_text_atomic
from slmkit.finetune.config import read_finetune_config
from slmkit.pipeline.config import PipelineConfig
from slmkit.train.config import recipe_from_dict

CONFIG_DIR = "configs"
LEFT_OUT_FILE = "data-sources-left-out.json"  # optional sources the data stage could not read here
SFT_TRAIN, SFT_HELDOUT = "sft-data/sft.jsonl", "sft-data/sft.heldout.jsonl"
PREFS_TRAIN, PREFS_HELDOUT = "preferences/prefs.jsonl", "preferences/prefs.heldout.jsonl"


def data_recipe(cfg: PipelineConfig, cwd: Path) -> dict:
    """`slm prepare`'s config: the recipe's data section, writing ROOT/data with its tokenizer in ROOT/tokenizer.
    Sources marked `optional: true` that cannot be read here are left out (see `unavailable_sources`)."""
    data = copy.deepcopy(cfg.data)
    sources = {}
    for name, source in (data.get("sources") or {}).items():
        if isinstance(source, dict) and source.get("paths"):
            source["paths"] = [str((cwd / Path(p).expanduser()).resolve()) for p in source["paths"]]
        if isinstance(source, dict) and source.get("cache_dir"):
            source["cache_dir"] = str((cwd / Path(source["cache_dir"]).expanduser()).resolve())
        if isinstance(source, dict) and source.pop("optional", False) and unavailable_reason(source):
            continue
        sources[name] = source
    if not sources and data.get("sources"):
        raise ConfigError("data.sources: every source is optional and none can be read here "
                          f"({'; '.join(f'{n}: {unavailable_reason(s)}' for n, s in unavailable_sources(cfg, cwd))})")
    if sources:
        data["sources"] = sources
    data["out_dir"] = "data"
    data["tokenizer"] = {**(data.get("tokenizer") or {}), "path": "tokenizer", "train_if_missing": True}
    return data


@functools.lru_cache(maxsize=8)
def _hub_reachable() -> bool:
    return not os.environ.get("HF_HUB_OFFLINE") and hub_reachable(timeout=3.0)


def unavailable_reason(source: dict) -> str:
    """Why a source cannot be read on this machine ('' when it can): no file matches, or no hub."""
    kind = source.get("kind", "synthetic")
    if kind == "files":
        found = any(glob.glob(str(Path(p).expanduser())) for p in source.get("paths", []))
        return "" if found else f"no file matches {', '.join(source.get('paths', []))}"
    if kind in ("tinystories", "hub") and not _hub_reachable():
        return "the Hugging Face hub cannot be reached (offline)"
    return ""


def unavailable_sources(cfg: PipelineConfig, cwd: Path) -> list[tuple[str, dict]]:
    """The optional sources the data stage leaves out here, with their settings (paths made absolute)."""
    left_out = []
    for name, source in (cfg.data.get("sources") or {}).items():
        if isinstance(source, dict) and source.get("optional"):
            resolved = dict(source)
            if resolved.get("paths"):
                resolved["paths"] = [str((cwd / Path(p).expanduser()).resolve()) for p in resolved["paths"]]
            if unavailable_reason(resolved):
                left_out.append((name, resolved))
    return left_out


def pretrain_recipe(cfg: PipelineConfig, cwd: Path) -> dict:
    if "data" in cfg.pretrain:
        raise ConfigError("pretrain.data: the pretraining data is the pipeline's data section; move it there")
    recipe = copy.deepcopy(cfg.pretrain)
    recipe["train"] = {**(recipe.get("train") or {}), "out_dir": "pretrain"}
    recipe["data"] = data_recipe(cfg, cwd)
    return recipe


def sft_recipe(cfg: PipelineConfig) -> dict:
    for key in ("base",):
        if key in cfg.sft:
            raise ConfigError(f"sft.{key}: the pipeline fine-tunes its own pretrained model; remove the key")
    recipe = copy.deepcopy(cfg.sft)
    recipe["base"] = "pretrain"
    recipe["data"] = {**(recipe.get("data") or {}), "train": SFT_TRAIN, "eval": SFT_HELDOUT}
    recipe["train"] = {**(recipe.get("train") or {}), "out_dir": "sft"}
    return recipe


def dpo_recipe(cfg: PipelineConfig) -> dict:
    if "policy" in cfg.dpo:
        raise ConfigError("dpo.policy: the pipeline aligns its own SFT model; remove the key")
    recipe = copy.deepcopy(cfg.dpo)
    recipe["policy"] = "sft"
    heldout = PREFS_HELDOUT if cfg.preferences.kind == "synthetic" else None  # None: the last eval_fraction
    recipe["data"] = {**(recipe.get("data") or {}), "train": PREFS_TRAIN, "eval": heldout}
    recipe["train"] = {**(recipe.get("train") or {}), "out_dir": "dpo"}
    return recipe


def with_local_paths(cfg: PipelineConfig, cwd: Path) -> PipelineConfig:
    """The recipe with the files its own sections name (the constitution, a local judge model) made absolute
    from `cwd`: the stages run in the run root, where a relative path would point elsewhere."""
    judge = cfg.eval.judge
    if judge and "://" not in judge and (cwd / judge).exists():
        judge = str((cwd / judge).resolve())
    constitution = str((cwd / Path(cfg.preferences.constitution).expanduser()).resolve())
    return dataclasses.replace(cfg, preferences=dataclasses.replace(cfg.preferences, constitution=constitution),
                               eval=dataclasses.replace(cfg.eval, judge=judge))


def stage_recipes(cfg: PipelineConfig, cwd: Path) -> dict[str, dict]:
    """File name (without .yaml) -> the recipe each training verb reads."""
    return {"data": data_recipe(cfg, cwd), "pretrain": pretrain_recipe(cfg, cwd), "sft": sft_recipe(cfg),
            "dpo": dpo_recipe(cfg)}


def write_stage_configs(cfg: PipelineConfig, root: Path, cwd: Path) -> dict[str, dict]:
    """Write ROOT/configs/*.yaml and check each with its verb's own reader (a wrong key fails here,
    named with its section, before any stage runs). Returns the recipes."""
    recipes = stage_recipes(cfg, cwd)
    folder = root / CONFIG_DIR
    folder.mkdir(parents=True, exist_ok=True)
    left_out = [{"source": name, "kind": s.get("kind", "synthetic"), "reason": unavailable_reason(s)}
                for name, s in unavailable_sources(cfg, cwd)]
    write_json_atomic(folder / LEFT_OUT_FILE, {"left_out": left_out})
    for name, recipe in recipes.items():
        path = folder / f"{name}.yaml"
        write_text_atomic(path, yaml.safe_dump(recipe, sort_keys=False))
        try:
            _check(name, path)
        except ConfigError as e:
            raise ConfigError(f"section {name}: {e}") from None
    return recipes


def _check(name: str, path: Path) -> None:
    if name == "data":
        from_dict(DataConfig, read_yaml(path))
    elif name == "pretrain":
        recipe_from_dict(read_yaml(path))
    elif name == "sft":
        read_finetune_config(path)
    elif name == "dpo":
        read_align_config(path)
