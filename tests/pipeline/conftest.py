"""A tiny capstone recipe (a 2-layer, d_model 32 model; tens of steps per stage) and helpers to run
`slm pipeline` as users do, in its own process.

Everything runs with one thread and fp32, so two runs of the same recipe give bitwise-equal weights:
the SIGKILL test compares a killed-and-resumed run with an uninterrupted one.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from slmkit.data.sources import generate_stories
from tests.train.conftest import slm_command, subprocess_env

TRAIN = dict(batch_size=4, seq_len=256, warmup_steps=1, progress=False, tensorboard=False, sample_tokens=0,
             precision="fp32", keep_last=1)


def tiny_recipe(workdir: Path, root: str = "runs/tiny") -> dict:
    return {
        "root": root,
        "data": {
            "sources": {
                "generated": {"kind": "synthetic", "limit": 500, "seed": 0, "weight": 3},
                "local": {"kind": "files", "paths": ["local.txt"], "delimiter": "blank_line", "weight": 1},
                "absent": {"kind": "files", "paths": ["missing/*.txt"], "optional": True},
            },
            "clean": {"max_dup_ngram_fraction": {str(n): 0.3 for n in range(5, 11)}},
            "tokenizer": {"vocab_size": 384}, "val_fraction": 0.05, "workers": 1, "progress": False,
        },
        "pretrain": {
            "model": dict(d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8, d_ff=64, max_seq_len=256,
                          qk_norm=True),
            "train": {**TRAIN, "seq_len": 64, "max_steps": 30, "lr": 3e-3, "eval_every": 10, "eval_windows": 8,
                      "checkpoint_every": 10, "log_every": 5},
        },
        "sft_data": {"examples": 200, "heldout": 20, "max_words": 120},
        "sft": {"method": "lora", "lora": {"r": 4, "alpha": 8},
                "train": {**TRAIN, "max_steps": 10, "lr": 3e-3, "eval_every": 5, "checkpoint_every": 5, "log_every": 5}},
        "preferences": {"pairs": 100, "heldout": 20},
        "dpo": {"method": "lora", "lora": {"r": 4, "alpha": 8},
                "train": {**TRAIN, "max_steps": 6, "lr": 1e-3, "eval_every": 3, "checkpoint_every": 3, "log_every": 3}},
        "export": {"gguf_quant": "f32"},
        "quantize": {"methods": ["int8", "int4"], "group_size": 32},
        "eval": {"suites": ["stories", "story-requests", "safety"], "limit": 4, "text_limit": 12, "max_new_tokens": 8,
                 "batch_size": 8},
        "deploy": {"load_test_requests": 4, "load_test_concurrency": 2, "load_test_max_tokens": 8,
                   "transcripts": ["Write a story about a cat named Max."]},
    }


def write_workdir(workdir: Path, **changes) -> Path:
    """A working directory with local.txt and recipe.yaml (the tiny recipe, top-level sections replaced)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "local.txt").write_text("\n\n".join(generate_stories(150, seed=99)), encoding="utf-8")
    recipe = {**tiny_recipe(workdir), **changes}
    (workdir / "recipe.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return workdir / "recipe.yaml"


def pipeline_command(*args: str) -> list[str]:
    return slm_command("pipeline", "recipe.yaml", *args)


def run_pipeline_cli(workdir: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(pipeline_command(*args), cwd=workdir, env=subprocess_env(), capture_output=True, text=True,
                          timeout=timeout)


def last_plan(root: Path) -> dict[str, str]:
    """What the last `slm pipeline` run did with each stage: reuse, resume or run."""
    return json.loads((root / "pipeline.json").read_text())["runs"][-1]["plan"]


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory) -> Path:
    """An uninterrupted run of the tiny recipe; returns its root."""
    workdir = tmp_path_factory.mktemp("pipeline-full")
    write_workdir(workdir)
    out = run_pipeline_cli(workdir)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return workdir / "runs" / "tiny"
