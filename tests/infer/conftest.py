"""Tiny random models (and a tiny tokenizer) for the generation tests."""

import pytest
import torch

from slmkit.model import Decoder, ModelConfig
from slmkit.tokenizer import train_bpe_from_texts

TEXT = ("Once upon a time there was a little cat. The cat liked to play with a red ball. "
        "One day the cat saw a big dog. Ünïcødé 日本語 ✓ emojis 🐱 too. ") * 20


def tiny(vocab_size=300, **overrides) -> ModelConfig:
    fields = dict(vocab_size=vocab_size, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8, d_ff=64,
                  max_seq_len=64, qk_norm=True, tie_embeddings=False, init_std=0.2)
    fields.update(overrides)
    return ModelConfig(**fields)


def random_model(seed=0, **overrides) -> Decoder:
    torch.manual_seed(seed)
    return Decoder(tiny(**overrides)).eval()


@pytest.fixture(scope="session")
def tokenizer():
    return train_bpe_from_texts([TEXT], vocab_size=300)


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory, tokenizer):
    """A saved checkpoint directory with the tokenizer: what `slm generate RUN` reads."""
    path = tmp_path_factory.mktemp("runs") / "tiny"
    model = random_model(vocab_size=tokenizer.vocab_size)
    tok_dir = tmp_path_factory.mktemp("tok")
    tokenizer.save(tok_dir)
    model.save_pretrained(path, tokenizer_dir=tok_dir)
    return path


def assert_decodes_like_forward(runner, model, ids, prefill: int = 4) -> None:
    """Prefill `prefill` tokens of `ids` [rows, n] through `runner`, then step one token at a time: each step's
    logits equal the full forward's at that position."""
    with torch.no_grad():
        full = model(ids).logits
        cache = runner.new_cache(ids.shape[0], ids.shape[1] + 4)
        runner.forward(ids[:, :prefill], cache)
        for t in range(prefill, ids.shape[1]):
            torch.testing.assert_close(runner.forward(ids[:, t:t + 1], cache), full[:, t], rtol=1e-4, atol=1e-4)
