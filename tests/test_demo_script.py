"""scripts/demo.py (what `make demo` runs) calls the library the way a user would; its last step, the
sample stories, runs here on a tiny saved model, so an API change that breaks the demo fails the suite."""

import importlib.util
from pathlib import Path

import torch

from slmkit.model import Decoder, ModelConfig
from slmkit.tokenizer import train_bpe_from_texts

DEMO = Path(__file__).resolve().parents[1] / "scripts" / "demo.py"


def test_demo_stories_continue_each_prompt(tmp_path):
    tok = train_bpe_from_texts(["Once upon a time there was a little cat. The cat and the dog played. " * 30],
                               vocab_size=300, special_tokens=["<|endoftext|>"])
    tok.save(tmp_path / "tok")
    torch.manual_seed(0)  # an unseeded random model samples <|endoftext|> early about one run in three
    model = Decoder(ModelConfig(vocab_size=tok.vocab_size, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2,
                                head_dim=8, d_ff=64, max_seq_len=160))
    model.save_pretrained(tmp_path / "run", tokenizer_dir=tmp_path / "tok")
    spec = importlib.util.spec_from_file_location("demo_script", DEMO)
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    stories = demo.stories(tmp_path / "run")
    assert [s[:16] for s in stories] == ["Once upon a time", "One day, a littl", "The cat and the "]
    prompts = ["Once upon a time", "One day, a little boy named Tom", "The cat and the dog"]
    assert all(len(s) > len(p) + 10 for s, p in zip(stories, prompts))  # each prompt was continued
