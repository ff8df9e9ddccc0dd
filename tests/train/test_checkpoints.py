"""Checkpoints: resume=auto never picks a corrupt or half-written one; compiled-run names load; retention."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from slmkit.errors import CheckpointError
from slmkit.train import Trainer
from slmkit.train import checkpointing as ckpt
from slmkit.train.run import build_loaders, build_model
from tests.train.conftest import run_config

QUIET = dict(log=lambda *a, **k: None)


@pytest.fixture(scope="module")
def finished_run(data_dir, tmp_path_factory):
    """A run with checkpoints at steps 2, 4 and 6 (copied fresh by each test)."""
    out = tmp_path_factory.mktemp("ckpt") / "run"
    cfg = run_config(data_dir, out, max_steps=6, checkpoint_every=2, keep_last=5, keep_best=False)
    train_data, _ = build_loaders(cfg, data_dir, None, 1)
    Trainer(cfg, build_model(cfg), train_data, **QUIET).fit()
    return out


@pytest.fixture
def run_dir(finished_run, tmp_path):
    shutil.copytree(finished_run, tmp_path / "run")
    return tmp_path / "run"


def latest(run_dir):
    found = ckpt.resolve_resume("auto", run_dir)
    return int(ckpt.NAME.match(found.name).group(1)) if found else None


def step_dir(run_dir, step):
    return run_dir / "checkpoints" / ckpt.checkpoint_name(step)


def test_latest_valid_is_picked(run_dir):
    assert [s for s, _ in ckpt.list_checkpoints(run_dir)] == [2, 4, 6]
    assert latest(run_dir) == 6


def test_truncated_weights_are_skipped(run_dir):
    path = step_dir(run_dir, 6) / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    assert latest(run_dir) == 4


def test_flipped_byte_is_skipped(run_dir):
    path = step_dir(run_dir, 6) / "optimizer.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different content: only the checksum notices
    path.write_bytes(bytes(data))
    assert latest(run_dir) == 4
    with pytest.raises(CheckpointError, match="corrupt"):
        ckpt.resolve_resume(str(step_dir(run_dir, 6)), run_dir)


def test_half_written_checkpoints_are_skipped(run_dir):
    # killed while writing: a temporary directory with some files, never renamed
    tmp = run_dir / "checkpoints" / ".tmp-step_00000008-999"
    shutil.copytree(step_dir(run_dir, 6), tmp)
    (tmp / "trainer_state.json").unlink()
    # a directory with the final name but no trainer_state.json (e.g. copied by hand, interrupted)
    shutil.copytree(step_dir(run_dir, 6), step_dir(run_dir, 10))
    (step_dir(run_dir, 10) / "trainer_state.json").unlink()
    # a trainer_state.json cut off mid-write
    shutil.copytree(step_dir(run_dir, 6), step_dir(run_dir, 12))
    state = step_dir(run_dir, 12) / "trainer_state.json"
    state.write_text(state.read_text()[:40])
    # a missing optimizer file
    shutil.copytree(step_dir(run_dir, 6), step_dir(run_dir, 14))
    (step_dir(run_dir, 14) / "optimizer.pt").unlink()
    assert latest(run_dir) == 6


def test_nothing_valid_starts_fresh(run_dir):
    for step in (2, 4, 6):
        (step_dir(run_dir, step) / "trainer_state.json").write_text("{")
    assert ckpt.resolve_resume("auto", run_dir) is None


def test_resume_auto_continues_from_the_valid_one(data_dir, run_dir):
    path = step_dir(run_dir, 6) / "model.safetensors"
    path.write_bytes(b"garbage")
    cfg = run_config(data_dir, run_dir, max_steps=6, checkpoint_every=2, keep_last=5, keep_best=False, resume="auto")
    train_data, _ = build_loaders(cfg, data_dir, None, 1)
    trainer = Trainer(cfg, build_model(cfg), train_data, **QUIET)
    assert trainer.step == 4 and trainer.train_data.state_dict()["step"] == 4
    expected = load_file(str(step_dir(run_dir, 4) / "model.safetensors"))
    assert torch.equal(trainer.model.embed.weight, expected["embed.weight"])


def test_compiled_run_names_are_read(data_dir, run_dir):
    """A torch.compile'd run's names carry `_orig_mod.`; a DDP run's `module.`: both load into a plain model."""
    source = step_dir(run_dir, 4)
    weights = load_file(str(source / "model.safetensors"))
    save_file({f"_orig_mod.{k}": v for k, v in weights.items()}, str(source / "model.safetensors"))
    optim = torch.load(source / "optimizer.pt", weights_only=True)
    optim["optimizer"]["state"] = {f"_orig_mod.module.{k}": v for k, v in optim["optimizer"]["state"].items()}
    for group in optim["optimizer"]["param_groups"]:
        group["params"] = [f"_orig_mod.module.{p}" for p in group["params"]]
    torch.save(optim, source / "optimizer.pt")
    state = json.loads((source / "trainer_state.json").read_text())
    for name in ("model.safetensors", "optimizer.pt"):
        state["files"][name] = {"bytes": (source / name).stat().st_size, "sha256": ckpt.sha256_file(source / name)}
    (source / "trainer_state.json").write_text(json.dumps(state))
    cfg = run_config(data_dir, run_dir, max_steps=6, resume=str(source))
    train_data, _ = build_loaders(cfg, data_dir, None, 1)
    trainer = Trainer(cfg, build_model(cfg), train_data, **QUIET)
    assert trainer.step == 4
    assert torch.equal(trainer.model.blocks[0].attn.q_proj.weight, weights["blocks.0.attn.q_proj.weight"])
    p = trainer.model.blocks[0].attn.q_proj.weight
    assert torch.equal(trainer.optimizer.state[p]["exp_avg"],
                       optim["optimizer"]["state"]["_orig_mod.module.blocks.0.attn.q_proj.weight"]["exp_avg"])


def test_keep_last_and_best(tmp_path):
    from slmkit.model import ModelConfig
    from slmkit.train.config import RunConfig

    model_config = ModelConfig(vocab_size=16, d_model=8, n_layers=1, n_heads=2, d_ff=8, max_seq_len=8)
    losses = {1: 3.0, 2: 1.5, 3: 2.0, 4: 2.5, 5: None}
    for step, loss in losses.items():
        ckpt.save_checkpoint(tmp_path, step, {"embed.weight": torch.zeros(16, 8)}, {"state": {}}, [],
                             {"val_loss": loss}, RunConfig(), model_config, None)
        ckpt.prune_checkpoints(tmp_path, keep_last=2, keep_best=True)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [2, 4, 5]  # best (1.5) + the last two
