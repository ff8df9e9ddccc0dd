"""A tiny random model directory with a small trained tokenizer: what `slm serve` loads in the tests."""

from __future__ import annotations

from pathlib import Path

import torch

from slmkit.model import Decoder, ModelConfig, save_pretrained
from slmkit.tokenizer import train_bpe_from_texts

TEXTS = [
    "Once upon a time there was a little cat who liked to play in the garden.",
    "The dog ran to the park and found a red ball under a big tree.",
    "Lily said hello to her friend Tom. They played together all day.",
    "Café, naïve, 世界, and 🙂 are words with characters beyond ASCII.",
] * 20


def make_tiny_run(directory: Path, vocab_size: int = 400, max_seq_len: int = 256, seed: int = 0, **overrides) -> Path:
    """Write a random Qwen3-style model (two layers, d_model 64) plus its tokenizer to `directory`."""
    tokenizer = train_bpe_from_texts(TEXTS, vocab_size)
    tok_dir = directory.parent / f"{directory.name}-tokenizer"
    tokenizer.save(tok_dir)
    torch.manual_seed(seed)
    fields = dict(vocab_size=tokenizer.vocab_size, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=16,
                  d_ff=128, max_seq_len=max_seq_len, qk_norm=True, tie_embeddings=True)
    fields.update(overrides)
    model = Decoder(ModelConfig(**fields)).eval()
    save_pretrained(model, directory, tokenizer_dir=tok_dir)
    return directory
