"""Distributed checkpoints (DCP) of a tensor-parallel run (tied head) resume under the same mesh exactly, and under another mesh
(pipeline stages) and a single process with the same next losses; the final model is an ordinary model directory.

One tp=2 run saves at steps 4 and 8. Its step-4 checkpoint then resumes (a) in place after its step-8 checkpoint is
deleted, as after a crash: the same layout replays steps 5-8 bitwise (the shards hold the exact tensors, the data
and RNG state are restored); (b) as pp=2 (1F1B) and (c) as one process, each with the same 8-row global batch:
their losses at steps 5-8 agree with the tp run's to 1e-4 (measured <= 1e-6; only float32 summation order differs,
as in test_model_parallel.py), which a mis-sharded or mis-keyed tensor, or lost Adam moments, would not. Under pp the
tied matrix is two copies (the first stage's embedding, the last stage's head) whose gradients are summed, whose
norm is counted once, and the head's copy reads the embedding's optimizer state from the shards.
"""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from slmkit.loading import load_model
from tests.train.conftest import run_slm
from tests.train.test_distributed import losses
from tests.train.test_model_parallel import mesh_recipe, torchrun

TIED = dict(tie_embeddings=True)  # under pp: two copies of the matrix (first and last stage), summed gradients
SETTINGS = dict(max_steps=8, warmup_steps=2, log_every=1, eval_every=0, sample_tokens=0, checkpoint_every=4,
                keep_last=2)


def losses_by_step(run_dir) -> dict[int, float]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records if r["kind"] == "train"}


@pytest.fixture(scope="module")
def tp_run(data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("tp-run")
    recipe = mesh_recipe(root / "r.yaml", data_dir, root / "run", model=TIED, parallel="tp", backend="gloo", batch_size=4,
                         grad_accum=2, **SETTINGS)
    out = torchrun(recipe, 2)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    run = root / "run"
    return recipe, run, losses_by_step(run), load_file(str(run / "model.safetensors"))


def test_checkpoints_are_shards_and_the_final_model_is_ordinary(tp_run):
    _, run, _, final = tp_run
    checkpoint = run / "checkpoints" / "step_00000004"
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert state["sharded"] and state["mesh"] == "tp=2"
    assert (checkpoint / "distributed" / ".metadata").is_file() and not (checkpoint / "model.safetensors").exists()
    assert any(name.startswith("distributed/") and name.endswith(".distcp") for name in state["files"])
    model, _ = load_model(run)  # model.safetensors + config.json + tokenizer.json, written by rank 0
    assert (run / "tokenizer.json").is_file()
    for name, tensor in model.state_dict().items():
        if name in final:
            torch.testing.assert_close(tensor, final[name], rtol=0, atol=0)


def test_same_mesh_resumes_exactly(tp_run, tmp_path):
    recipe, run, first_losses, first_final = tp_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    shutil.rmtree(copy / "checkpoints" / "step_00000008")  # as if killed after step 4's checkpoint
    out = torchrun(recipe, 2, f"train.out_dir={copy}", "train.resume=auto")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "resumed from" in out.stdout + out.stderr
    assert losses(copy) == [first_losses[s] for s in sorted(first_losses)]  # steps 5-8 logged again: same values
    second = load_file(str(copy / "model.safetensors"))
    assert all(torch.equal(second[k], first_final[k]) for k in first_final)


@pytest.mark.parametrize("layout", ["pp2-1f1b", "one-process"])
def test_other_layouts_resume_with_the_same_next_losses(data_dir, tp_run, tmp_path, layout):
    _, run, first_losses, first_final = tp_run
    checkpoint = run / "checkpoints" / "step_00000004"
    common = dict(SETTINGS, resume=str(checkpoint))
    if layout == "one-process":
        recipe = mesh_recipe(tmp_path / "r.yaml", data_dir, tmp_path / "run", model=TIED, batch_size=8, **common)
        out = run_slm("train", str(recipe))
    else:
        recipe = mesh_recipe(tmp_path / "r.yaml", data_dir, tmp_path / "run", model=TIED, parallel="pp",
                             pp_schedule="1f1b",
                             backend="gloo", batch_size=2, grad_accum=4, **common)
        out = torchrun(recipe, 2)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    resumed = losses_by_step(tmp_path / "run")
    assert sorted(resumed) == [5, 6, 7, 8]
    assert [resumed[s] for s in range(5, 9)] == pytest.approx([first_losses[s] for s in range(5, 9)], abs=1e-4)
    final = load_file(str(tmp_path / "run" / "model.safetensors"))
    for name in first_final:
        torch.testing.assert_close(final[name], first_final[name], rtol=0, atol=1e-4, msg=name)
