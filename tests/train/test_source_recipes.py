"""The source systems as recipes: the TinyStories notebook's GPT-2 (configs/notebook-gpt2.yaml) and the
tutorial's 2.5M model on the user's own text (configs/tutorial-2.5m.yaml) have the shapes their sources give,
and each trains and samples on real TinyStories text (a few steps: the shapes, tokenizers and sampling work)."""

from __future__ import annotations

import json

from slmkit.model import count_parameters
from slmkit.train.config import read_recipe
from tests.conftest import REPO, shared_path
from tests.train.conftest import run_slm

FEW_STEPS = ["train.max_steps=4", "train.warmup_steps=1", "train.eval_every=4", "train.eval_windows=4",
             "train.checkpoint_every=0", "train.log_every=1", "train.sample_tokens=12", "train.tensorboard=false",
             "train.plots=false", "train.progress=false", "train.max_minutes=null", "train.time_schedule=false",
             "data.workers=1", "data.progress=false"]


def test_notebook_gpt2_has_the_notebooks_shape():
    cfg = read_recipe(REPO / "configs" / "notebook-gpt2.yaml").config
    m = cfg.model
    assert (m.n_layers, m.n_heads, m.d_model, m.max_seq_len, m.dropout) == (4, 8, 256, 128, 0.1)
    assert (m.positions, m.norm, m.mlp, m.tie_embeddings) == ("learned", "layernorm", "gelu", True)
    assert cfg.data.tokenizer.hub_id == "openai-community/gpt2" and cfg.train.seq_len == 128
    assert cfg.train.schedule == "cosine" and cfg.train.grad_clip == 1.0 and cfg.train.sample_prompts == ["Once upon a time"]
    assert count_parameters(m.replace(vocab_size=50257))["total"] == 16_058_112


def test_tutorial_model_has_about_2_5m_parameters():
    cfg = read_recipe(REPO / "configs" / "tutorial-2.5m.yaml").config
    assert count_parameters(cfg.model.replace(vocab_size=cfg.data.tokenizer.vocab_size))["total"] == 2_607_168
    assert cfg.data.tokenizer.train_if_missing and cfg.train.sample_top_k == 40


def last_eval(run_dir) -> dict:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r["kind"] == "eval"][-1]


def test_notebook_gpt2_trains_with_gpt2s_tokenizer(tmp_path):
    out = run_slm("train", str(REPO / "configs" / "notebook-gpt2.yaml"), *FEW_STEPS,
                  f"data.tokenizer.path={shared_path('gpt2-tokenizer')}", f"data.out_dir={tmp_path / 'data'}",
                  "data.sources={text: {kind: files, paths: [" + str(shared_path("tinystories",
                                                                               "tinystories_train_head_2MiB.txt"))
                  + "], limit: 300}}", "data.val_fraction=0.05", f"train.out_dir={tmp_path / 'run'}", timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["vocab_size"] == 50257
    assert last_eval(tmp_path / "run")["samples"][0].startswith("Once upon a time")


def test_tutorial_trains_on_a_users_text_file(tmp_path):
    text = shared_path("tinystories", "tinystories_validation_head_hf.txt")  # paragraphs between blank lines
    out = run_slm("train", str(REPO / "configs" / "tutorial-2.5m.yaml"), *FEW_STEPS,
                  f"data.sources.text.paths=[{text}]", "data.sources.text.limit=600", "data.tokenizer.vocab_size=512",
                  f"data.tokenizer.path={tmp_path / 'tok'}", f"data.out_dir={tmp_path / 'data'}",
                  f"train.out_dir={tmp_path / 'run'}", timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert json.loads((tmp_path / "tok" / "tokenizer.json").read_text())["model"]["type"] == "BPE"
    assert json.loads((tmp_path / "run" / "config.json").read_text())["vocab_size"] == 512
    assert last_eval(tmp_path / "run")["val_bpb"] > 0
