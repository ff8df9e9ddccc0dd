"""Exact resume: SIGKILL a training process at a random step, resume with train.resume=auto, and end
with bitwise the same weights as a run that was never interrupted (CPU, one thread per process).

The recipe uses dropout (so the RNG states must be restored), gradient accumulation, clipping, a
cosine schedule, evaluation with samples in between, and checkpoints every 3 steps."""

import json
import random
import signal
import subprocess
import time

import torch
from safetensors.torch import load_file

from slmkit.train.checkpointing import list_checkpoints
from tests.train.conftest import run_slm, slm_command, subprocess_env, write_recipe

STEPS = 24
SETTINGS = dict(max_steps=STEPS, checkpoint_every=3, keep_last=2, eval_every=6, eval_windows=16, sample_tokens=4,
                grad_accum=2, batch_size=2, warmup_steps=3, log_every=1)


def last_logged_step(run_dir) -> int:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return 0
    steps = [json.loads(line)["step"] for line in path.read_text().splitlines() if line.endswith("}")]
    return max(steps, default=0)


def train_losses(run_dir) -> dict[int, float]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records if r["kind"] == "train"}


def test_sigkill_at_a_random_step_then_resume_is_bitwise_identical(data_dir, tmp_path):
    kill_at = random.SystemRandom().randint(4, STEPS - 3)
    a = write_recipe(tmp_path / "a.yaml", data_dir, tmp_path / "uninterrupted", **SETTINGS)
    b = write_recipe(tmp_path / "b.yaml", data_dir, tmp_path / "killed", **SETTINGS)
    for recipe in (a, b):  # dropout on: the RNG state matters
        text = recipe.read_text().replace("model:\n", "model:\n  dropout: 0.1\n")
        recipe.write_text(text)
    env = subprocess_env()
    whole = subprocess.Popen(slm_command("train", str(a)), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    victim = subprocess.Popen(slm_command("train", str(b)), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while last_logged_step(tmp_path / "killed") < kill_at and victim.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_at = last_logged_step(tmp_path / "killed")
    assert victim.returncode == -signal.SIGKILL, f"the run finished before step {kill_at}: {victim.stdout.read()}"
    assert killed_at < STEPS
    saved = [s for s, _ in list_checkpoints(tmp_path / "killed")]

    resumed = run_slm("train", str(b), "train.resume=auto")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert whole.wait(timeout=120) == 0, whole.stdout.read()

    first = load_file(str(tmp_path / "uninterrupted" / "model.safetensors"))
    second = load_file(str(tmp_path / "killed" / "model.safetensors"))
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), (
            f"{name} differs after SIGKILL at step {killed_at} (checkpoints {saved}) and resume")
    # the resumed run's losses continue the uninterrupted curve exactly
    assert train_losses(tmp_path / "killed") == train_losses(tmp_path / "uninterrupted")
    assert "resumed from" in resumed.stdout + resumed.stderr


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(data_dir, tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", data_dir, tmp_path / "run", max_steps=100000, log_every=1,
                          checkpoint_every=0, warmup_steps=1)
    proc = subprocess.Popen(slm_command("train", str(recipe)), env=subprocess_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    while last_logged_step(tmp_path / "run") < 3 and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "interrupted" in out and "resume=auto" in out
    (step, path), = list_checkpoints(tmp_path / "run")
    assert step >= 3 and (path / "trainer_state.json").is_file()
