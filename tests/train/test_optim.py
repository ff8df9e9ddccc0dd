"""The optimizer's groups and learning rates, and Muon: its update on a known gradient against a Newton-Schulz
reference, the matrices it takes, and a Muon run that resumes bitwise from a checkpoint."""

import math

import pytest
import torch
from safetensors.torch import load_file

from slmkit.model import Decoder
from slmkit.train.checkpointing import checkpoint_name
from slmkit.train.config import TrainConfig
from slmkit.train.optim import CombinedOptimizer, build_optimizer, parameter_groups
from slmkit.train.schedules import set_lr
from tests.model.tiny import tiny_config
from tests.train.conftest import assert_same_final_weights, fit_quietly, run_config

QUIET = dict(log=lambda *a, **k: None)


def newton_schulz_reference(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Keller Jordan's quintic Newton-Schulz iteration (Muon), in float64."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.double()
    tall = x.shape[0] > x.shape[1]
    x = x.T if tall else x
    x = x / x.norm()
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


def names_of(model, groups):
    names = {id(p): n for n, p in model.named_parameters()}
    return [{names[id(p)] for p in g["params"]} for g in groups]


def test_default_groups_decay_matrices_only():
    model = Decoder(tiny_config(tie_embeddings=True))
    adamw, muon = parameter_groups(model, TrainConfig(weight_decay=0.1))
    assert muon == [] and [g["weight_decay"] for g in adamw] == [0.1, 0.0]
    decayed, rest = names_of(model, adamw)
    assert decayed == {n for n, p in model.named_parameters() if p.ndim == 2 and "embed" not in n}
    assert "embed.weight" in rest and all(g["lr_scale"] == 1.0 for g in adamw)


def test_muon_takes_the_block_matrices_and_each_group_its_lr():
    model = Decoder(tiny_config(tie_embeddings=False))
    cfg = TrainConfig(optimizer="muon", lr=1e-3, muon_lr=0.02, embed_lr=4e-3, head_lr=2e-3, weight_decay=0.1)
    adamw, muon = parameter_groups(model, cfg)
    (muon_names,) = names_of(model, muon)
    assert muon_names == {n for n, p in model.named_parameters() if p.ndim == 2 and n.startswith("blocks.")}
    by_name = {frozenset(names): g for names, g in zip(names_of(model, adamw), adamw)}
    assert by_name[frozenset({"head.weight"})]["lr_scale"] == pytest.approx(2.0)
    assert by_name[frozenset({"embed.weight"})]["lr_scale"] == pytest.approx(4.0)
    assert by_name[frozenset({"embed.weight"})]["weight_decay"] == 0.0
    optimizer = build_optimizer(model, cfg, torch.device("cpu"))
    assert isinstance(optimizer, CombinedOptimizer) and isinstance(optimizer.optimizers[0], torch.optim.Muon)
    set_lr(optimizer, 5e-4)  # the schedule's value: every group scaled from it
    lrs = sorted(g["lr"] for g in optimizer.param_groups)
    assert lrs == pytest.approx(sorted([5e-4 * 20, 5e-4 * 2, 5e-4 * 4, 5e-4]))


def test_muon_update_is_the_orthogonalised_gradient():
    torch.manual_seed(0)
    model = Decoder(tiny_config(d_ff=48))
    cfg = TrainConfig(optimizer="muon", lr=1e-3, muon_lr=0.05, weight_decay=0.0)
    optimizer = build_optimizer(model, cfg, torch.device("cpu"))
    weight = model.blocks[0].mlp.up_proj.weight  # [48, 32]: tall, so Muon's lr grows by sqrt(48 / 32)
    grad = torch.randn(weight.shape, generator=torch.Generator().manual_seed(1))
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # AdamW's parameters do not move with a zero gradient at step one
    weight.grad = grad.clone()
    before = weight.detach().clone()
    set_lr(optimizer, cfg.lr)
    optimizer.step()
    expected = -0.05 * math.sqrt(48 / 32) * newton_schulz_reference(grad)
    torch.testing.assert_close((weight.detach() - before).double(), expected, rtol=0, atol=4e-3)  # bf16 iteration
    singular = torch.linalg.svdvals(expected.double())
    assert 0.5 < float(singular.min() / singular.max()) and float(singular.max()) < 0.05 * math.sqrt(1.5) * 1.6


def test_a_muon_run_resumes_bitwise(data_dir, tmp_path):
    settings = dict(optimizer="muon", muon_lr=0.02, max_steps=8, checkpoint_every=4, keep_last=5, keep_best=False,
                    schedule="constant")  # the first 4 steps of the 8-step run are the 4-step run's
    fit_quietly(run_config(data_dir, tmp_path / "whole", **settings), data_dir)
    fit_quietly(run_config(data_dir, tmp_path / "cut", **{**settings, "max_steps": 4}), data_dir)
    resumed = fit_quietly(run_config(data_dir, tmp_path / "cut", **settings, resume="auto"), data_dir)
    assert resumed.resumed_from is not None
    a = assert_same_final_weights(tmp_path / "whole", tmp_path / "cut")
    at_4 = load_file(str(tmp_path / "cut" / "checkpoints" / checkpoint_name(4) / "model.safetensors"))
    assert not all(torch.equal(a[k], at_4[k]) for k in a)  # it trained past the checkpoint


def test_muon_under_fsdp_is_refused(tmp_path):
    """FSDP shards each matrix across ranks; Muon needs the whole matrix to orthogonalise it."""
    import torch.distributed as torch_dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from slmkit.errors import ConfigError

    torch_dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        model = Decoder(tiny_config())
        fully_shard(model, mesh=init_device_mesh("cpu", (1,)))
        with pytest.raises(ConfigError, match="FSDP shards them: use train.parallel=ddp"):
            build_optimizer(model, TrainConfig(optimizer="muon"), torch.device("cpu"))
        assert build_optimizer(model, TrainConfig(), torch.device("cpu")) is not None  # AdamW is fine
    finally:
        torch_dist.destroy_process_group()
