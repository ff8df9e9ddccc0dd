"""Schedules against their closed forms at the steps that matter, and stepping per optimizer step."""

import math

import pytest

from slmkit.errors import ConfigError
from slmkit.train import Trainer
from slmkit.train.config import TrainConfig
from slmkit.train.schedules import Schedule, make_schedule


def test_cosine_key_steps():
    s = Schedule("cosine", lr=1e-3, min_lr=1e-4, warmup=10, total=110)
    assert s(0) == pytest.approx(1e-4)  # (0 + 1) / 10 of the peak: the first step already learns
    assert s(4) == pytest.approx(5e-4)
    assert s(9) == pytest.approx(1e-3)  # warmup ends at the peak
    assert s(10) == pytest.approx(1e-3)  # cosine starts at the peak
    assert s(60) == pytest.approx(1e-4 + 0.5 * 9e-4)  # half-way: the mean of peak and floor
    assert s(35) == pytest.approx(1e-4 + 0.5 * 9e-4 * (1 + math.cos(math.pi * 0.25)))
    assert s(110) == pytest.approx(1e-4)
    assert s(500) == pytest.approx(1e-4)  # stays at the floor past the end
    values = [s(i) for i in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:])), "the decay never raises the rate"


def test_wsd_key_steps():
    s = Schedule("wsd", lr=2e-3, min_lr=2e-4, warmup=5, total=100, decay_fraction=0.2)
    assert s(4) == pytest.approx(2e-3)
    assert s(5) == s(50) == s(79) == pytest.approx(2e-3)  # stable until the last 20 steps
    assert s(80) == pytest.approx(2e-3)
    assert s(90) == pytest.approx(1.1e-3)  # linear: half-way down
    assert s(100) == pytest.approx(2e-4)


def test_constant():
    s = Schedule("constant", lr=5e-4, min_lr=0.0, warmup=4, total=10)
    assert [s(i) for i in range(6)] == pytest.approx([1.25e-4, 2.5e-4, 3.75e-4, 5e-4, 5e-4, 5e-4])


def test_min_lr_above_lr_is_rejected():
    with pytest.raises(ConfigError, match="above lr"):
        Schedule("cosine", lr=1e-4, min_lr=5e-4, warmup=0, total=10)  # the book's bug
    with pytest.raises(ValueError, match="above lr"):
        TrainConfig(lr=1e-4, min_lr=5e-4)
    assert make_schedule(TrainConfig(lr=1e-3, min_lr_ratio=0.1, warmup_steps=0, max_steps=10))(10) == pytest.approx(1e-4)


def test_lr_steps_once_per_optimizer_step(data_dir, tmp_path):
    """With 4 micro-batches per step, step k still gets schedule(k) (the book stepped per micro-batch)."""
    from slmkit.train.run import build_loaders, build_model
    from tests.train.conftest import run_config

    cfg = run_config(data_dir, tmp_path / "run", grad_accum=4, batch_size=1, max_steps=6, warmup_steps=4)
    train_data, _ = build_loaders(cfg, data_dir, None, 1)
    trainer = Trainer(cfg, build_model(cfg), train_data, log=lambda *a: None)
    seen = [trainer.train_step()["lr"] for _ in range(6)]
    schedule = make_schedule(cfg.train)
    assert seen == pytest.approx([schedule(i) for i in range(6)])
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(schedule(5))
    assert seen[3] == pytest.approx(cfg.train.lr)  # warmup over after 4 optimizer steps, not 1


def test_time_schedule_reaches_the_floor_by_the_deadline(data_dir, tmp_path):
    from slmkit.train.run import build_loaders, build_model
    from tests.train.conftest import run_config

    cfg = run_config(data_dir, tmp_path / "run", max_steps=100, warmup_steps=10, max_minutes=1.0, time_schedule=True)
    train_data, _ = build_loaders(cfg, data_dir, None, 1)
    trainer = Trainer(cfg, build_model(cfg), train_data, log=lambda *a: None)
    schedule = make_schedule(cfg.train)
    trainer.step, trainer.train_seconds = 20, 30.0  # half the time used, a fifth of the steps
    assert trainer.train_step()["lr"] == pytest.approx(schedule(50))
    trainer.step, trainer.train_seconds = 80, 30.0  # ahead of the clock: steps decide
    assert trainer.train_step()["lr"] == pytest.approx(schedule(80))
    with pytest.raises(ValueError, match="needs max_minutes"):
        TrainConfig(time_schedule=True)
