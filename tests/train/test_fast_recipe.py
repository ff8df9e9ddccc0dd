"""configs/fast-tiny.yaml: it loads with every speedrun switch on, and a run with those switches resumes from a
checkpoint with bitwise the same weights as one never interrupted (time_schedule off: with it the learning rate
follows the clock, and such runs resume closely, not bitwise)."""

from pathlib import Path


from slmkit.train import Trainer, load_run_config
from slmkit.train.config import run_config_from_dict
from slmkit.train.run import build_loaders, build_model
from tests.train.conftest import assert_same_final_weights, fit_quietly, recipe

REPO = Path(__file__).resolve().parents[2]

QUIET = dict(log=lambda *a, **k: None)
FAST_MODEL = dict(mlp="relu2", tie_embeddings=False, logit_softcap=30.0, zero_init_residual=True)
FAST_TRAIN = dict(optimizer="muon", muon_lr=0.03, embed_lr=6e-3, head_lr=3e-3, schedule="wsd", decay_fraction=0.4,
                  window_start="document", weight_decay=0.0, min_lr_ratio=0.0)


def test_the_fast_recipe_turns_the_switches_on():
    cfg = load_run_config(REPO / "configs" / "fast-tiny.yaml")
    m, t = cfg.model, cfg.train
    assert (m.mlp, m.logit_softcap, m.zero_init_residual) == ("relu2", 30.0, True)
    assert (t.schedule, t.time_schedule, t.min_lr_ratio) == ("wsd", True, 0.0)
    plain = load_run_config(REPO / "configs" / "demo.yaml").model
    assert abs(m.d_ff * 2 - plain.d_ff * 3) == 0  # ReLU²'s two matrices hold SwiGLU's three's parameters


def fast_config(data_dir, out, **train):
    fields = recipe(data_dir, out, **{**FAST_TRAIN, **train})
    fields["model"].update(FAST_MODEL)
    return run_config_from_dict(fields)


def test_a_fast_run_resumes_bitwise(data_dir, tmp_path):
    settings = dict(max_steps=8, checkpoint_every=4, keep_last=5, keep_best=False, warmup_steps=2)
    fit_quietly(fast_config(data_dir, tmp_path / "whole", **settings), data_dir)
    first = fast_config(data_dir, tmp_path / "cut", **settings)
    trainer = Trainer(first, build_model(first), build_loaders(first, data_dir, None, 1)[0], **QUIET)
    for _ in range(4):
        trainer.train_step()
    trainer.save_checkpoint()  # then the process "dies"
    resumed = fast_config(data_dir, tmp_path / "cut", **settings, resume="auto")
    trainer = Trainer(resumed, build_model(resumed), build_loaders(resumed, data_dir, None, 1)[0], **QUIET)
    assert trainer.step == 4
    trainer.fit()
    a = assert_same_final_weights(tmp_path / "whole", tmp_path / "cut")
    assert "head.weight" in a and any(k.endswith("mlp.up_proj.weight") for k in a)
