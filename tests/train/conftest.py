"""Fixtures for the training tests: a small prepared shard directory and tiny run configs.

Everything is tiny (a 2-layer, d_model 32 model, 32-token windows, a 320-id tokenizer) so that a
training step takes milliseconds and the whole directory runs in well under a minute on 2 cores.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from slmkit.config import load_config
from slmkit.data import DataConfig, prepare
from slmkit.data.sources import generate_stories
from slmkit.tokenizer import train_bpe_from_texts
from slmkit.train.config import load_run_config
from tests.conftest import REPO

TINY_MODEL = dict(d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8, d_ff=64, max_seq_len=64, qk_norm=True)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """Synthetic stories -> a 320-id BPE -> train/val shards."""
    root = tmp_path_factory.mktemp("train-data")
    tok = train_bpe_from_texts(list(generate_stories(300, seed=7)), 320)
    tok.save(root / "tok")
    cfg = load_config(DataConfig, None, [
        f"out_dir={root / 'data'}", f"tokenizer.path={root / 'tok'}", "progress=false", "workers=1",
        "sources.stories.kind=synthetic", "sources.stories.limit=600", "val_fraction=0.05",
    ])
    prepare(cfg, log=lambda *_: None)
    return root / "data"


def recipe(data_dir: Path, out_dir: Path, **train) -> dict:
    """A tiny run recipe as a dict (model, data, train sections)."""
    t = dict(out_dir=str(out_dir), batch_size=4, grad_accum=1, seq_len=32, max_steps=12, lr=3e-3, warmup_steps=2,
             eval_every=0, eval_windows=16, checkpoint_every=0, log_every=1, progress=False, tensorboard=False,
             plots=False, sample_tokens=0, prepare_if_missing=False)
    t.update(train)
    return {"model": dict(TINY_MODEL), "data": {"out_dir": str(data_dir), "progress": False}, "train": t}


def run_config(data_dir: Path, out_dir: Path, **train):
    from slmkit.train.config import run_config_from_dict

    return run_config_from_dict(recipe(data_dir, out_dir, **train))


def write_recipe(path: Path, data_dir: Path, out_dir: Path, **train) -> Path:
    path.write_text(yaml.safe_dump(recipe(data_dir, out_dir, **train)), encoding="utf-8")
    return path


def subprocess_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")  # the same thread count in every run: bitwise-comparable
    env.pop("WORLD_SIZE", None)
    env.pop("RANK", None)
    return env


def slm_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "slmkit", *args]


def run_slm(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(slm_command(*args), env=subprocess_env(), capture_output=True, text=True, timeout=timeout,
                          cwd=REPO)


__all__ = ["load_run_config", "recipe", "run_config", "write_recipe", "run_slm", "slm_command", "subprocess_env"]


def fit_quietly(cfg, data_dir: Path):
    """A Trainer for `cfg` on the prepared `data_dir`, run to its end without logging; the Trainer."""
    from slmkit.train import Trainer
    from slmkit.train.run import build_loaders, build_model

    trainer = Trainer(cfg, build_model(cfg), build_loaders(cfg, data_dir, None, 1)[0], log=lambda *a, **k: None)
    trainer.fit()
    return trainer


def assert_same_final_weights(a: Path, b: Path) -> dict:
    """The two run directories' final model.safetensors hold bitwise equal tensors; returns a's."""
    from safetensors.torch import load_file

    first, second = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    return first
