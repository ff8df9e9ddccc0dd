"""Training checkpoints: write atomically, find the latest valid one, keep the last K plus the best.

A checkpoint is a directory `RUN/checkpoints/step_00001000/` holding

    model.safetensors, config.json, tokenizer.json ...   loadable by `load_model` like any model directory
                        (a LoRA fine-tune's holds its adapter files instead: train/weights.py)
    optimizer.pt        AdamW moments (+ fp16 scaler), keyed by parameter name; read with weights_only=True
    rng.pt              every rank's torch / CUDA / numpy / python RNG states (weights_only=True)
    run_config.yaml     the resolved RunConfig
    trainer_state.json  step, tokens, data-loader state, metrics, and each file's size and sha256

It is written under a temporary name and renamed when complete (fileio.atomic_directory), and trainer_state.json (written last)
lists every file's checksum, so a half-written or corrupted checkpoint is recognised and skipped by
`resume=auto`. Model and optimizer state use full (unsharded) tensors keyed by parameter name, so a
checkpoint from one process, DDP or FSDP resumes under any of them; `_orig_mod.` (torch.compile)
and `module.` (DDP) prefixes are stripped on load.

A run whose model is split over a mesh (tp or pp) writes `distributed/` (DCP shards of the model and optimizer,
written by every rank at once; train/sharded_checkpoint.py) in place of model.safetensors and optimizer.pt; any
layout, a single process included, resumes from it. Its final model is written as an ordinary model directory.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from slmkit.config import save_config
from slmkit.errors import CheckpointError
from slmkit.fileio import (is_temporary, publish_directory, sha256_file, temporary_sibling, write_json_atomic,
                           write_text_atomic)
from slmkit.model.checkpoint import CONFIG_FILE, copy_tokenizer_files, slmkit_config
from slmkit.train.sharded_checkpoint import METADATA, SHARDED_DIR
from slmkit.train.weights import FullWeights, strip_prefixes

CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.pt"
RNG_FILE = "rng.pt"
NAME = re.compile(r"^step_(\d{8})$")


# --- RNG -------------------------------------------------------------------------------------------
def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": _python_state_to_plain(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    random.setstate(_plain_to_python_state(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _python_state_to_plain(state):
    version, internal, gauss = state
    return {"version": version, "internal": list(internal), "gauss": gauss}


def _plain_to_python_state(plain):
    return plain["version"], tuple(plain["internal"]), plain["gauss"]


# --- writing ---------------------------------------------------------------------------------------
def checkpoint_name(step: int) -> str:
    return f"step_{step:08d}"


def save_checkpoint(run_dir: Path, step: int, model_state: dict | None, optimizer_state: dict | None,
                    rng_states: list, trainer_state: dict, run_config, model_config, tokenizer_dir: Path | None,
                    scaler_state: dict | None = None, weights=None, sharded: Path | None = None) -> Path:
    """Write checkpoint `step` atomically (rank 0 only); returns its directory. `weights` (default
    FullWeights) decides which tensors it holds and in which files. `sharded`: a temporary directory
    (fileio.temporary_sibling of the checkpoint) where every rank already wrote the model and optimizer state
    as DCP shards (train/sharded_checkpoint.py); model_state and optimizer_state are then None, and the
    checkpoint holds config.json and the tokenizer instead of model.safetensors.

    trainer_state.json, written last inside the temporary directory, lists every file's size and sha256.
    """
    weights = weights or FullWeights()
    final = Path(run_dir) / CHECKPOINTS / checkpoint_name(step)
    # (re-saving the same step, e.g. at the end of a run right after a periodic save, replaces it)
    tmp = Path(sharded) if sharded is not None else temporary_sibling(final)
    try:
        if sharded is None:
            weights.write(tmp, weights.select(model_state), model_config, tokenizer_dir)
            torch.save({"optimizer": optimizer_state, "scaler": scaler_state}, tmp / OPTIMIZER_FILE)
            weight_files = list(weights.files)
        else:
            write_text_atomic(tmp / CONFIG_FILE, json.dumps(slmkit_config(model_config), indent=2) + "\n")
            if tokenizer_dir is not None:
                copy_tokenizer_files(Path(tokenizer_dir), tmp)
            weight_files = [CONFIG_FILE, f"{SHARDED_DIR}/{METADATA}"]
        torch.save({"ranks": rng_states}, tmp / RNG_FILE)
        save_config(run_config, tmp / "run_config.yaml")
        files = {}
        for path in sorted(tmp.rglob("*")):
            if path.is_file():
                files[path.relative_to(tmp).as_posix()] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
        state = {"format": "slmkit-trainer-state/1", "step": step, **trainer_state,
                 "weight_files": weight_files, "sharded": sharded is not None, "files": files}
        write_json_atomic(tmp / STATE_FILE, state)
        publish_directory(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


# --- finding and validating ------------------------------------------------------------------------
def read_trainer_state(directory: Path) -> dict:
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        raise CheckpointError(f"{directory} has no {STATE_FILE}: not a complete training checkpoint")
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{path} is not valid JSON (a half-written checkpoint?)") from None
    if not isinstance(state, dict) or "step" not in state or "files" not in state:
        raise CheckpointError(f"{path} is incomplete (no step or file list)")
    return state


def verify_checkpoint(directory: Path, checksums: bool = True) -> dict:
    """The trainer state of a complete, intact checkpoint; CheckpointError saying what is wrong otherwise."""
    directory = Path(directory)
    state = read_trainer_state(directory)
    required = [] if state.get("sharded") else [OPTIMIZER_FILE]  # a sharded one keeps the optimizer in its shards
    for name in (*state.get("weight_files", FullWeights.files), *required):
        if name not in state["files"]:
            raise CheckpointError(f"{directory}: {STATE_FILE} does not list {name}")
    for name, info in state["files"].items():
        path = directory / name
        if not path.is_file():
            raise CheckpointError(f"{directory}: {name} is missing")
        if path.stat().st_size != info["bytes"]:
            raise CheckpointError(f"{directory}: {name} has {path.stat().st_size} bytes, expected {info['bytes']} "
                                  "(truncated or half-written)")
        if checksums and sha256_file(path) != info["sha256"]:
            raise CheckpointError(f"{directory}: {name} is corrupt (sha256 differs from {STATE_FILE})")
    return state


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, directory) of every finished-looking checkpoint, oldest first (not yet verified)."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = NAME.match(path.name)
        if match and path.is_dir():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_valid_checkpoint(run_dir: Path, log=None) -> Path | None:
    """The newest checkpoint that verifies (sizes and checksums); broken ones are reported and skipped."""
    for step, path in reversed(list_checkpoints(run_dir)):
        try:
            verify_checkpoint(path)
            return path
        except CheckpointError as e:
            if log:
                log(f"skipping checkpoint {path.name}: {e}")
    return None


def resolve_resume(resume: str, run_dir: Path, log=None) -> Path | None:
    """`train.resume`: none -> None; auto -> latest valid (or None); a path -> that checkpoint, verified."""
    if resume in ("none", "", "false", "False"):
        return None
    if resume == "auto":
        return latest_valid_checkpoint(run_dir, log)
    path = Path(resume)
    if path.is_dir() and not (path / STATE_FILE).exists() and list_checkpoints(path):
        found = latest_valid_checkpoint(path, log)  # a run directory: its latest checkpoint
        if found is None:
            raise CheckpointError(f"{path} has no valid checkpoint to resume from")
        return found
    verify_checkpoint(path)
    return path


def prune_checkpoints(run_dir: Path, keep_last: int, keep_best: bool) -> list[Path]:
    """Delete all but the newest `keep_last` checkpoints and (optionally) the best by validation loss."""
    found = list_checkpoints(run_dir)
    keep = {path for _, path in found[-keep_last:]} if keep_last > 0 else set()
    if keep_best:
        best, best_loss = None, float("inf")
        for _, path in found:
            try:
                loss = read_trainer_state(path).get("val_loss")
            except CheckpointError:
                continue
            if loss is not None and loss < best_loss:
                best, best_loss = path, loss
        if best is not None:
            keep.add(best)
    if not keep and found:
        keep.add(found[-1][1])  # never delete the only way to resume
    removed = []
    for _, path in found:
        if path not in keep:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def remove_stale_temporaries(run_dir: Path) -> None:
    """Delete what a killed writer left in RUN/checkpoints (fileio's temporary names)."""
    root = Path(run_dir) / CHECKPOINTS
    if root.is_dir():
        for path in root.iterdir():
            if is_temporary(path):
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink()


# --- reading ---------------------------------------------------------------------------------------
def load_training_files(directory: Path) -> tuple[dict, dict]:
    """(optimizer.pt contents, rng.pt contents), both read with weights_only=True."""
    directory = Path(directory)
    optim = torch.load(directory / OPTIMIZER_FILE, map_location="cpu", weights_only=True)
    rng_path = directory / RNG_FILE
    rng = torch.load(rng_path, map_location="cpu", weights_only=True) if rng_path.is_file() else {"ranks": []}
    optim["optimizer"] = _strip_optimizer_names(optim["optimizer"])
    return optim, rng


def _strip_optimizer_names(state: dict) -> dict:
    """Optimizer state keyed by parameter name: strip compile/DDP prefixes from the names."""
    if isinstance(state.get("state"), dict) and all(isinstance(k, str) for k in state["state"]):
        state = dict(state)
        state["state"] = strip_prefixes(state["state"])
        groups = []
        for group in state.get("param_groups", []):
            group = dict(group)
            group["params"] = [next(iter(strip_prefixes({p: None}))) if isinstance(p, str) else p
                               for p in group["params"]]
            groups.append(group)
        state["param_groups"] = groups
    return state
