"""Fixtures for the evaluation tests: a prepared shard directory whose validation split is real TinyStories
paragraphs (as the quality benchmark prepares it), a tokenizer and a tiny random model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from slmkit.config import load_config
from slmkit.data import DataConfig, SourceConfig, prepare
from slmkit.data.sources import generate_stories
from slmkit.model import Decoder, ModelConfig
from slmkit.tokenizer import load_tokenizer, train_bpe_from_texts

VOCAB = 320
VALIDATION_PARAGRAPHS = 60


@pytest.fixture(scope="session")
def eval_data_dir(tmp_path_factory, tinystories_valid) -> Path:
    """Synthetic stories for the train split; the first paragraphs of the TinyStories validation file,
    split at blank lines, for the val split."""
    root = tmp_path_factory.mktemp("eval-data")
    paragraphs = tinystories_valid.read_text(encoding="utf-8").split("\n\n")[:VALIDATION_PARAGRAPHS]
    (root / "valid.txt").write_text("\n\n".join(paragraphs), encoding="utf-8")
    tok = train_bpe_from_texts(list(generate_stories(300, seed=7)), VOCAB)
    tok.save(root / "tok")
    cfg = load_config(DataConfig, None, [f"out_dir={root / 'data'}", f"tokenizer.path={root / 'tok'}",
                                         "progress=false", "workers=1"])
    cfg.sources = {
        "train": SourceConfig(kind="synthetic", limit=300, split="train"),
        "val": SourceConfig(kind="files", paths=[str(root / "valid.txt")], delimiter="blank_line", split="val"),
    }
    prepare(cfg, log=lambda *_: None)
    return root / "data"


@pytest.fixture(scope="session")
def eval_tokenizer(eval_data_dir):
    return load_tokenizer(eval_data_dir / "tokenizer")


@pytest.fixture(scope="session")
def random_model():
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=VOCAB, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8, d_ff=64,
                         max_seq_len=64, qk_norm=True, init_std=0.3)  # logits far from uniform
    return Decoder(config).eval()


class UniformModel(torch.nn.Module):
    """Every id equally likely at every position: the loss is exactly ln(vocab) per target."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab = vocab

    def forward(self, x, document_ids=None):
        return type("Output", (), {"logits": torch.zeros(*x.shape, self.vocab)})()
