"""Tensor and pipeline parallelism (and their meshes with dp) under torchrun with gloo follow the loss curve of one
process with the same global batch.

Every layout trains on the same 8 rows per step (rows are dealt by the data-parallel rank only), from the same
initial weights (every rank builds the model from the seed), so the runs differ only in float32 summation
order: TP sums the row-wise matmuls' partial products across ranks, PP and FSDP sum gradients of micro-batches
in a different order. That moves losses by ~1e-6 over 8 steps (measured up to 8.3e-7); the tolerance is 1e-4
absolute, the DDP/FSDP tests' bound: a wrong loss scale, a missed gradient reduction or an unclipped stage
moves them by 1e-2 or more from the second step on. Validation (a full copy evaluated by rank 0) and the final
weights are held to the same bound.

The tp and 1f1b layouts recompute each block in backward (train.gradient_checkpointing: the same arithmetic), the
gpipe layout computes its loss in chunks of 8 positions on the last stage (train.loss_chunk_size),
which sums the same cross-entropy in a different order. The model is 4 layers (so the interleaved schedule has a
layer per virtual stage) with an untied head; test_mesh_checkpoints.py trains a tied one under tp and pp (whose
two copies of the matrix, on the first and last stage, must take the same steps), tensor_parallel_check.py
checks its tp gradients.
"""

import json
import socket
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file

from slmkit.errors import ConfigError
from slmkit.model import ModelConfig
from slmkit.train.config import TrainConfig
from slmkit.train.distributed import Dist
from slmkit.train.mesh import MeshShape, check_model_fits, mesh_shape, parse_mesh
from tests.train.conftest import REPO, TINY_MODEL, run_slm, subprocess_env, write_recipe
from tests.train.test_distributed import losses, val_losses

SETTINGS = dict(max_steps=8, warmup_steps=2, log_every=1, eval_every=4, eval_windows=16, sample_tokens=3,
                checkpoint_every=4, keep_last=1)
MODEL = dict(TINY_MODEL, n_layers=4, tie_embeddings=False)


def mesh_recipe(path, data_dir, out_dir, model=None, **train):
    """A tiny recipe with the 4-layer model (`model`: fields to change)."""
    path = write_recipe(path, data_dir, out_dir, **train)
    data = yaml.safe_load(path.read_text())
    data["model"] = dict(MODEL, **(model or {}))
    path.write_text(yaml.safe_dump(data))
    return path


def torchrun(recipe, nproc: int, *overrides, timeout: int = 240):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "slmkit", "train", str(recipe), *overrides]
    return subprocess.run(command, env=subprocess_env(), capture_output=True, text=True, timeout=timeout, cwd=REPO)


@pytest.fixture(scope="module")
def single(data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("single")
    recipe = mesh_recipe(root / "r.yaml", data_dir, root / "run", batch_size=8, **SETTINGS)
    out = run_slm("train", str(recipe))
    assert out.returncode == 0, out.stdout + out.stderr
    return root / "run"


LAYOUTS = {  # name: (processes, train settings); each gives 8 rows per optimizer step
    "tp": (2, dict(parallel="tp", batch_size=4, grad_accum=2, gradient_checkpointing=True)),
    "pp-gpipe": (2, dict(parallel="pp", pp_schedule="gpipe", batch_size=2, grad_accum=4, loss_chunk_size=8)),
    "pp-1f1b": (2, dict(parallel="pp", pp_schedule="1f1b", batch_size=2, grad_accum=4, gradient_checkpointing=True)),
    "pp-interleaved": (2, dict(parallel="pp", pp_schedule="interleaved", batch_size=2, grad_accum=4)),
    "pp2xdp2": (4, dict(mesh="pp=2,dp=2", batch_size=2, grad_accum=2)),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layout_matches_one_process(data_dir, tmp_path, single, layout):
    nproc, train = LAYOUTS[layout]
    recipe = mesh_recipe(tmp_path / "r.yaml", data_dir, tmp_path / "run", backend="gloo", **train, **SETTINGS)
    out = torchrun(recipe, nproc)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    run = tmp_path / "run"
    assert len(losses(run)) == SETTINGS["max_steps"]
    assert losses(run) == pytest.approx(losses(single), abs=1e-4)
    assert val_losses(run) == pytest.approx(val_losses(single), abs=1e-4)
    a, b = load_file(str(single / "model.safetensors")), load_file(str(run / "model.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-4, msg=name)
    assert len(list((run / "checkpoints").iterdir())) == 1  # one writer


def test_tensor_parallel_gradients_equal_the_unsharded_layers():
    """Each parameter's gradient, gathered from its shards, equals the unsharded decoder's (tied and untied
    heads, with and without sequence parallelism): see tensor_parallel_check.py."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(REPO / "tests" / "train" / "tensor_parallel_check.py")]
    out = subprocess.run(command, env=subprocess_env(), capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "qwen3-like: gradients match" in out.stdout and "gpt2-like: gradients match" in out.stdout


# --- the mesh setting ------------------------------------------------------------------------------
def test_mesh_parses_in_any_order():
    assert parse_mesh("tp=2, dp=4") == MeshShape(dp=4, tp=2)
    assert parse_mesh("pp=2,dp=2").world_size == 4
    assert mesh_shape(TrainConfig(parallel="tp"), 4) == MeshShape(tp=4)
    assert mesh_shape(TrainConfig(parallel="pp"), 2) == MeshShape(pp=2)
    assert mesh_shape(TrainConfig(parallel="fsdp"), 2) == MeshShape(dp=2)


@pytest.mark.parametrize("text, message", [
    ("dp=2,cp=2", "'cp=2' is not DIM=DEGREE"),
    ("dp=2,dp=2", "names dp twice"),
    ("tp=0", "tp=0 must be a positive whole number"),
    ("tp", "'tp' is not DIM=DEGREE"),
])
def test_bad_mesh_is_a_config_error(text, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(mesh=text)


def test_mesh_must_cover_the_world():
    with pytest.raises(ConfigError, match="needs 4 processes, but torchrun started 2"):
        mesh_shape(TrainConfig(mesh="dp=2,tp=2"), 2)


@pytest.mark.parametrize("shape, model, train, message", [
    (MeshShape(tp=2), dict(n_heads=3, n_kv_heads=3, head_dim=8), {}, r"model.n_heads \(3\) is not divisible by tp=2"),
    (MeshShape(tp=2), dict(n_heads=4, n_kv_heads=1), {}, r"model.n_kv_heads \(1\) is not divisible by tp=2"),
    (MeshShape(pp=2), dict(n_layers=1, tie_embeddings=False), {}, r"model.n_layers \(1\) is less than the 2 stages"),
    (MeshShape(pp=2), dict(n_layers=2, tie_embeddings=False), dict(pp_schedule="interleaved", grad_accum=2),
     "less than the 4 stages"),
    (MeshShape(pp=2), dict(tie_embeddings=False), dict(grad_accum=1), "needs at least as many micro-batches"),
    (MeshShape(pp=2), dict(n_layers=4), dict(pp_schedule="interleaved", grad_accum=5), "make it divisible by 2"),
    (MeshShape(tp=2), dict(positions="learned"), {}, "sequence parallelism needs rotary positions"),
    (MeshShape(tp=2), dict(n_experts=4), {}, "mixture-of-experts"),
])
def test_model_that_cannot_be_split_is_a_config_error(shape, model, train, message):
    fields = dict(TINY_MODEL, **model)
    with pytest.raises(ConfigError, match=message):
        check_model_fits(shape, ModelConfig(**fields), TrainConfig(seq_len=32, **train))


def test_ranks_of_one_data_parallel_group_share_its_rows():
    """Coordinates are init_device_mesh's row-major (pp, dp, tp) order; the loader shards by dp_rank alone."""
    shape = MeshShape(pp=2, dp=2, tp=2)
    coords = [(d.pp_rank, d.dp_rank, d.tp_rank) for d in (Dist(rank=r, world_size=8, shape=shape) for r in range(8))]
    assert coords == [(p, d, t) for p in range(2) for d in range(2) for t in range(2)]
    assert [Dist(rank=r, world_size=8, shape=shape).reports_loss for r in range(8)] == [False] * 4 + [True, False] * 2
    plain = Dist(rank=1, world_size=2)  # no mesh: every process is a data-parallel rank
    assert (plain.dp_rank, plain.dp_size, plain.reports_loss) == (1, 2, True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_dp_by_tp_rendezvous_and_match_one_process(data_dir, tmp_path, single):
    """Two torchrun agents ("nodes", two processes each) meet at a c10d rendezvous on localhost, as on two hosts
    (docs/scaling-out.md), and train the usual multi-node layout, train.mesh="dp=2,tp=2": tensor parallelism inside
    each node, FSDP2 across them. The same losses, validation and final weights as one process."""
    recipe = mesh_recipe(tmp_path / "r.yaml", data_dir, tmp_path / "run", backend="gloo", mesh="dp=2,tp=2",
                         batch_size=2, grad_accum=2, **SETTINGS)
    port = free_port()
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=2",
                               "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{port}", "--rdzv_id=two-nodes",
                               f"--node_rank={rank}", "-m", "slmkit", "train", str(recipe)],
                              env=subprocess_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for rank in range(2)]
    outputs = [node.communicate(timeout=240)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    run = tmp_path / "run"
    info = json.loads((run / "run_info.json").read_text())
    assert info["hardware"]["world_size"] == 4
    assert losses(run) == pytest.approx(losses(single), abs=1e-4)
    assert val_losses(run) == pytest.approx(val_losses(single), abs=1e-4)
    a, b = load_file(str(single / "model.safetensors")), load_file(str(run / "model.safetensors"))
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-4, msg=name)
