"""SIGKILL in the middle of pretraining, then the same command again: the pipeline continues from the
pretraining checkpoint and ends with the same weights, bit for bit, as an uninterrupted run (one thread,
fp32, the Trainer's exact resume). Then a changed SFT section re-runs SFT and what follows, and nothing
before it; --from re-runs a stage and what follows."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
import torch
from safetensors.torch import load_file

from slmkit.pipeline import STAGE_NAMES
from tests.pipeline.conftest import last_plan, pipeline_command, run_pipeline_cli, write_workdir
from tests.train.conftest import subprocess_env

KILL_AT = "pretrain/checkpoints/step_00000010"  # pretraining runs 30 steps, a checkpoint every 10


def _kill_once_checkpointed(workdir, root) -> None:
    pipeline = subprocess.Popen(pipeline_command(), cwd=workdir, env=subprocess_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (root / KILL_AT).is_dir():
        assert pipeline.poll() is None, "the pipeline ended before pretraining checkpointed"
        assert time.time() < deadline, "no pretraining checkpoint within 240 s"
        time.sleep(0.05)
    os.kill(pipeline.pid, signal.SIGKILL)
    pipeline.wait()


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("pipeline-killed")
    write_workdir(workdir)
    root = workdir / "runs" / "tiny"
    _kill_once_checkpointed(workdir, root)
    time.sleep(1.0)  # the trainer died with the pipeline (PR_SET_PDEATHSIG): nothing more is written
    state = json.loads((root / "pipeline.json").read_text())["stages"]
    assert state["pretrain"]["status"] == "running" and not (root / "pretrain" / "model.safetensors").exists()
    out = run_pipeline_cli(workdir)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return workdir, root


def test_killed_run_resumes_from_the_checkpoint(resumed_run):
    workdir, root = resumed_run
    plan = last_plan(root)
    assert plan["data"] == "reuse" and plan["pretrain"] == "resume"
    assert all(plan[name] == "run" for name in STAGE_NAMES[2:])
    assert json.loads((root / "pipeline.json").read_text())["stages"]["pretrain"]["attempts"] == 2
    log = (root / "logs" / "pretrain.log").read_text()
    assert "resum" in log.split("$ slm train")[-1]  # the second attempt continued from a checkpoint


def test_resumed_run_ends_with_the_uninterrupted_weights(resumed_run, finished_run):
    _, root = resumed_run
    for path in ("pretrain/model.safetensors", "sft/adapter.safetensors", "dpo/adapter.safetensors",
                 "export/merged/model.safetensors"):
        resumed, uninterrupted = load_file(root / path), load_file(finished_run / path)
        assert set(resumed) == set(uninterrupted), path
        for name in resumed:
            torch.testing.assert_close(resumed[name], uninterrupted[name], rtol=0, atol=0, msg=f"{path}: {name}")


def test_changed_sft_section_reruns_sft_and_after_only(resumed_run):
    workdir, root = resumed_run
    before = {p: (root / p).stat().st_mtime_ns for p in ("pretrain/model.safetensors", "data/manifest.json")}
    out = run_pipeline_cli(workdir, "sft.train.lr=0.002")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    plan = last_plan(root)
    assert [plan[n] for n in ("data", "pretrain", "sft-data")] == ["reuse"] * 3
    assert all(plan[n] == "run" for n in STAGE_NAMES[STAGE_NAMES.index("sft"):])
    assert before == {p: (root / p).stat().st_mtime_ns for p in before}
    out = run_pipeline_cli(workdir, "sft.train.lr=0.002", "--from", "dpo", "--until", "export")
    assert out.returncode == 0, out.stderr[-2000:]
    plan = last_plan(root)
    assert list(plan) == STAGE_NAMES[:STAGE_NAMES.index("export") + 1]
    assert [plan[n] for n in ("sft", "preferences", "dpo", "export")] == ["reuse", "reuse", "run", "run"]


@pytest.mark.parametrize("how", ["sigterm", "ctrl-c"])
def test_stop_signal_stops_the_stage_with_a_checkpoint_and_marks_it_interrupted(tmp_path, how):
    write_workdir(tmp_path)
    root = tmp_path / "runs" / "tiny"
    pipeline = subprocess.Popen(pipeline_command("pretrain.train.max_steps=100000"), cwd=tmp_path,
                                env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)  # its own process group, as a shell gives a command
    deadline = time.time() + 240
    while not (root / KILL_AT).is_dir():
        assert pipeline.poll() is None and time.time() < deadline
        time.sleep(0.05)
    if how == "sigterm":
        pipeline.send_signal(signal.SIGTERM)  # passed on to the trainer, which saves and exits 0
    else:
        os.killpg(pipeline.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
    out, _ = pipeline.communicate(timeout=120)
    assert pipeline.returncode == 130, out[-2000:]
    assert "stage pretrain interrupted: run the same command again" in out
    state = json.loads((root / "pipeline.json").read_text())["stages"]
    assert state["pretrain"]["status"] == "interrupted" and "sft" not in state
    assert json.loads((root / "pretrain" / "run_status.json").read_text())["status"] == "interrupted"
