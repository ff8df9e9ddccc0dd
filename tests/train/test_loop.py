"""The optimizer step: accumulation k×b equals one batch of k·b, non-finite steps are skipped, the
parameter groups, and that a step really learns."""

import math

import pytest
import torch

from slmkit.train import Trainer, TrainingDiverged
from slmkit.train.checkpointing import list_checkpoints
from slmkit.train.weights import FullWeights
from slmkit.train.config import TrainConfig
from slmkit.train.optim import parameter_groups
from slmkit.train.run import build_loaders, build_model
from tests.train.conftest import run_config

QUIET = dict(log=lambda *a, **k: None)


def make_trainer(data_dir, out_dir, loss_fn=None, **train):
    cfg = run_config(data_dir, out_dir, **train)
    train_data, _ = build_loaders(cfg, data_dir, None, 1)
    return Trainer(cfg, build_model(cfg), train_data, loss_fn=loss_fn, **QUIET)


def weights(trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


class MaskedBatches:
    """Random ids with about a third of the targets masked (-100), so micro-batches hold unequal
    numbers of targets: a per-micro-batch mean would weight them wrongly, a global count does not."""

    def __init__(self, rows, vocab, seq=16):
        self.rows, self.vocab, self.seq, self.step = rows, vocab, seq, 0

    def next_batch(self):
        g = torch.Generator().manual_seed(self.step)
        self.step += 1
        x = torch.randint(0, self.vocab, (self.rows, self.seq), generator=g)
        y = torch.randint(0, self.vocab, (self.rows, self.seq), generator=g)
        y[torch.rand(y.shape, generator=g) < 0.33] = -100
        y[0, :12] = -100  # a row with few targets
        return x, y

    def state_dict(self):
        return {"step": self.step}

    def load_state_dict(self, state):
        self.step = state["step"]


@pytest.mark.parametrize("source", ["shards", "masked"])
def test_accumulation_equals_big_batch(data_dir, tmp_path, source):
    """4 micro-batches of 2 rows == 1 batch of 8 rows: the same losses and weights after 3 steps.

    Tolerance: the float32 gradient sums run in a different order (4 parts), and Adam's first steps
    move each weight by about lr·sign(g), so a gradient near zero can flip a few weights by up to a
    step: losses rel 1e-5, weights atol 1e-5 (lr is 3e-3) — a per-micro-batch mean instead of the
    global count (the "masked" case) or a missed micro-batch fails by far more."""
    results = []
    for accum, rows in ((4, 2), (1, 8)):
        cfg = run_config(data_dir, tmp_path / f"run{accum}", grad_accum=accum, batch_size=rows, max_steps=3,
                         warmup_steps=0, grad_clip=0.5)
        model = build_model(cfg)
        data = MaskedBatches(8, cfg.model.vocab_size) if source == "masked" else build_loaders(cfg, data_dir, None, 1)[0]
        trainer = Trainer(cfg, model, data, **QUIET)
        losses = [trainer.train_step()["loss"] for _ in range(3)]
        results.append((losses, weights(trainer)))
    (loss_a, w_a), (loss_b, w_b) = results
    assert loss_a == pytest.approx(loss_b, rel=1e-5)
    for name in w_a:
        torch.testing.assert_close(w_a[name], w_b[name], rtol=1e-5, atol=1e-5, msg=name)


def test_planted_nan_is_skipped_and_counted(data_dir, tmp_path):
    calls = {"n": 0}

    def loss_fn(model, batch):
        from slmkit.train.batches import lm_loss

        loss, extras = lm_loss(model, batch)
        calls["n"] += 1
        if calls["n"] == 3:  # the third optimizer step's loss is NaN
            loss = loss * float("nan")
        return loss, extras

    trainer = make_trainer(data_dir, tmp_path / "run", loss_fn=loss_fn, max_steps=6)
    trainer.train_step(), trainer.train_step()
    before = weights(trainer)
    adam_steps = [trainer.optimizer.state[p]["step"].clone() for p in trainer.params]
    out = trainer.train_step()
    assert out["skipped"] and math.isnan(out["loss"])
    for name, value in weights(trainer).items():
        assert torch.equal(value, before[name]), f"{name} changed on a skipped step"
    assert all(torch.equal(trainer.optimizer.state[p]["step"], s) for p, s in zip(trainer.params, adam_steps))
    assert all(p.grad is None for p in trainer.params), "the bad gradients must be dropped"
    assert trainer.skipped == 1 and trainer.step == 3
    out = trainer.train_step()
    assert not out["skipped"] and math.isfinite(out["loss"]) and trainer.bad_in_row == 0
    assert any(not torch.equal(v, before[k]) for k, v in weights(trainer).items())


def test_too_many_bad_steps_stop_with_a_checkpoint(data_dir, tmp_path):
    from slmkit.train.batches import lm_loss

    calls = {"n": 0}

    def loss_fn(model, batch):
        loss, extras = lm_loss(model, batch)
        calls["n"] += 1
        return (loss * float("inf") if calls["n"] > 2 else loss), extras

    trainer = make_trainer(data_dir, tmp_path / "run", loss_fn=loss_fn, max_steps=20, max_bad_steps=3)
    with pytest.raises(TrainingDiverged, match="3 non-finite steps in a row at step 5"):
        trainer.fit()
    (step, path), = list_checkpoints(tmp_path / "run")
    assert step == 5
    good = FullWeights().read(path, trainer.model_config)
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(good[name], value), "the checkpoint holds the last good weights"


def test_no_weight_decay_on_norms_biases_embeddings():
    from slmkit.model import Decoder, ModelConfig

    model = Decoder(ModelConfig(vocab_size=64, d_model=32, n_layers=1, n_heads=4, d_ff=48, max_seq_len=64,
                                norm="layernorm", mlp="gelu", positions="learned", attn_qkv_bias=True,
                                mlp_bias=True, tie_embeddings=True))
    (decay, no_decay), muon = parameter_groups(model, TrainConfig(weight_decay=0.1))
    assert muon == []
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert decayed == {n for n, p in model.named_parameters() if p.ndim == 2 and "embed" not in n}
    assert "embed.weight" not in decayed and "pos_embed.weight" not in decayed
    total = sum(p.numel() for g in (decay, no_decay) for p in g["params"])
    assert total == sum(p.numel() for p in model.parameters())  # the tied head counted once


def test_training_lowers_the_loss(data_dir, tmp_path):
    trainer = make_trainer(data_dir, tmp_path / "run", max_steps=30, warmup_steps=3)
    losses = [trainer.train_step()["loss"] for _ in range(30)]
    assert sum(losses[-5:]) / 5 < losses[0] - 1.0
