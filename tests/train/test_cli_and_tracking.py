"""`slm train`: bad configs give one-line errors; a run leaves its config, metrics, events, curves,
run info and a loadable model; bits per byte counts the validation text's UTF-8 bytes."""

import contextlib
import json
import math

import numpy as np
import pytest
import torch

from slmkit.cli import main
from slmkit.data import EvalBatches, read_manifest
from slmkit.eval import token_byte_lengths
from slmkit.tokenizer import load_tokenizer
from slmkit.train.config import load_run_config
from slmkit.train.evaluation import evaluate
from slmkit.train.distributed import Dist
from tests.train.conftest import write_recipe


@pytest.mark.parametrize("overrides, message", [
    (["train.lr=1e-3", "train.min_lr=5e-3"], "min_lr (0.005) is above lr (0.001)"),
    (["train.lrr=1e-3"], "unknown config key 'train.lrr' (did you mean: lr"),
    (["optim.lr=1e-3"], "unknown config section 'optim'"),
    (["model.preset=nope"], "unknown model preset 'nope'"),
    (["train.precision=fp8"], "train.precision: 'fp8' is not one of"),
    (["model.n_heads=3"], "model"),
    (["train.seq_len=128"], "longer than model.max_seq_len"),
])
def test_bad_config_is_one_line(data_dir, tmp_path, capsys, overrides, message):
    recipe = write_recipe(tmp_path / "r.yaml", data_dir, tmp_path / "run")
    assert main(["train", str(recipe), *overrides]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err


def test_run_directory_contents(data_dir, tmp_path, capsys):
    recipe = write_recipe(tmp_path / "r.yaml", data_dir, tmp_path / "run", max_steps=6, eval_every=3,
                          tensorboard=True, plots=True, sample_tokens=5, checkpoint_every=3, keep_last=1)
    assert main(["train", str(recipe), "train.log_every=2"]) == 0
    out = capsys.readouterr().out
    run = tmp_path / "run"
    assert "validation: loss" in out and "bits/byte" in out and str(run) in out
    resolved = load_run_config(run / "config.yaml")  # the saved config is complete and reloads
    assert resolved.model.vocab_size == 320 and resolved.train.max_steps == 6
    info = json.loads((run / "run_info.json").read_text())
    assert {"git_commit", "versions", "hardware"} <= set(info) and info["versions"]["torch"] == torch.__version__
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == [2, 4, 6]
    assert {"loss", "lr", "grad_norm", "tokens_per_s", "mfu", "memory_gb", "tokens"} <= set(train[-1])
    evals = [r for r in records if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [0, 3, 6]
    assert len(evals[-1]["samples"]) == 3 and evals[-1]["samples"][0].startswith("Once upon a time")
    assert evals[-1]["val_ppl"] == pytest.approx(math.exp(evals[-1]["val_loss"]))
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert (run / "curves.png").stat().st_size > 1000
    from slmkit.loading import load_model

    model, model_info = load_model(run)
    assert model_info.tokenizer_path is not None and model.config.n_layers == 2


def test_bits_per_byte_counts_utf8_bytes(data_dir):
    tok = load_tokenizer(data_dir / "tokenizer")
    tokens = np.concatenate([np.asarray(m, dtype=np.int64) for m in read_manifest(data_dir).memmaps("val")])
    targets = [t for t in tokens.tolist() if t != tok.eos_id]  # every document token; end-of-text is not one
    text_bytes = len(tok.decode_bytes(targets))  # the validation text itself, end-of-text markers left out

    class Uniform(torch.nn.Module):  # every id equally likely: loss is exactly ln(vocab) per token
        training = False

        def forward(self, x, document_ids=None):
            return type("Out", (), {"logits": torch.zeros(*x.shape, 320)})()

    batches = EvalBatches(data_dir, 4, 32, split="val", rank=0, world_size=1, verify=False)
    result = evaluate(Uniform(), batches, torch.device("cpu"), contextlib.nullcontext,
                      token_byte_lengths(tok, 320), Dist())
    assert result["val_tokens"] == len(targets)
    assert result["val_loss"] == pytest.approx(math.log(320))
    assert result["val_bpb"] == pytest.approx(math.log(320) * len(targets) / math.log(2) / text_bytes)


@pytest.mark.parametrize("name", ["demo", "stories15m", "qwen3-283m", "gpt2-124m"])
def test_recipes_load(name):
    from tests.conftest import REPO

    cfg = load_run_config(REPO / "configs" / f"{name}.yaml")
    assert cfg.train.floor_lr <= cfg.train.lr and cfg.train.warmup_steps < cfg.train.max_steps
    assert cfg.train.seq_len <= cfg.model.max_seq_len


def test_fresh_start_refuses_to_mix_with_an_old_run(data_dir, tmp_path, capsys):
    recipe = write_recipe(tmp_path / "r.yaml", data_dir, tmp_path / "run", max_steps=2)
    assert main(["train", str(recipe)]) == 0
    assert main(["train", str(recipe)]) == 1
    assert "already holds checkpoints" in capsys.readouterr().err
    assert main(["train", str(recipe), "train.overwrite=true"]) == 0
    records = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(records) == 3  # train steps 1, 2 and the final eval: the old run's lines are gone
