"""DDP and FSDP2 with 2 CPU processes under torchrun (gloo) follow the loss curve of one process
with the same global batch.

Every rank draws the same global batch and trains on its own rows (see slmkit.train.batches), so
the runs see identical data; they differ only in float32 summation order (all-reduce of gradient
halves vs one backward over all rows). Tolerance: per-step losses within 1e-4 absolute (they agree
to ~1e-6 in practice) over 8 steps, final weights within 1e-4.
"""

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from tests.train.conftest import REPO, run_slm, subprocess_env, write_recipe

SETTINGS = dict(max_steps=8, warmup_steps=2, log_every=1, eval_every=4, eval_windows=16, sample_tokens=3,
                checkpoint_every=4, keep_last=1)


def losses(run_dir) -> list[float]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    by_step = {r["step"]: r["loss"] for r in records if r["kind"] == "train"}  # a resumed run logs again: last wins
    return [by_step[s] for s in sorted(by_step)]


def val_losses(run_dir) -> list[float]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["val_loss"] for r in records if r["kind"] == "eval"]


@pytest.fixture(scope="module")
def single(data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("single")
    recipe = write_recipe(root / "r.yaml", data_dir, root / "run", batch_size=8, **SETTINGS)
    out = run_slm("train", str(recipe))
    assert out.returncode == 0, out.stdout + out.stderr
    return root / "run"


def torchrun(recipe, *overrides):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "slmkit", "train", str(recipe), *overrides]
    return subprocess.run(command, env=subprocess_env(), capture_output=True, text=True, timeout=180, cwd=REPO)


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_processes_match_one(data_dir, tmp_path, single, parallel):
    # 2 ranks x 2 micro-batches x 2 rows == 1 process x 8 rows
    recipe = write_recipe(tmp_path / "r.yaml", data_dir, tmp_path / "run", batch_size=2, grad_accum=2,
                          parallel=parallel, backend="gloo", **SETTINGS)
    out = torchrun(recipe)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    run = tmp_path / "run"
    assert losses(run) == pytest.approx(losses(single), abs=1e-4)
    assert len(losses(run)) == SETTINGS["max_steps"]
    assert val_losses(run) == pytest.approx(val_losses(single), abs=1e-4)  # evaluation is split over ranks too
    a, b = load_file(str(single / "model.safetensors")), load_file(str(run / "model.safetensors"))
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-4, msg=name)
    # only rank 0 writes: one metrics file, one final checkpoint
    assert len(list((run / "checkpoints").iterdir())) == 1
    info = json.loads((run / "run_info.json").read_text())
    assert info["hardware"]["world_size"] == 2


def test_fsdp_resumes_from_its_own_checkpoint(data_dir, tmp_path):
    """Sharded state is gathered into full tensors on save and re-sharded on load: delete the last
    checkpoint of a finished FSDP run, resume from the one before, and end with the same weights."""
    import shutil

    recipe = write_recipe(tmp_path / "r.yaml", data_dir, tmp_path / "run", batch_size=2, grad_accum=2,
                          parallel="fsdp", backend="gloo", **{**SETTINGS, "keep_last": 2})
    assert torchrun(recipe).returncode == 0
    run = tmp_path / "run"
    first = load_file(str(run / "model.safetensors"))
    first_losses = losses(run)
    shutil.rmtree(run / "checkpoints" / "step_00000008")
    out = torchrun(recipe, "train.resume=auto")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "resumed from" in out.stdout + out.stderr
    second = load_file(str(run / "model.safetensors"))
    for name in first:
        torch.testing.assert_close(second[name], first[name], rtol=0, atol=1e-6, msg=name)
    assert losses(run) == pytest.approx(first_losses, abs=1e-6)  # steps 5-8 logged again, same values
