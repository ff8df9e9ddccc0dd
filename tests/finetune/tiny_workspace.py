"""A tiny base model, its tokenizer and a small chat SFT set on disk, and recipe overrides for short
fine-tunes of it: what the fine-tuning and multi-adapter tests train on."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from slmkit.data.sources.instructions import generate_instruction_examples
from slmkit.finetune.config import read_finetune_config
from slmkit.model import Decoder, ModelConfig
from slmkit.tokenizer import train_bpe_from_texts


def make_workspace(root: Path) -> Path:
    """root/tok (a 600-id BPE without chat tokens), root/base (a random 2-layer Llama-style model),
    root/sft.jsonl (24 generated chat examples)."""
    examples = list(generate_instruction_examples(24, seed=0))
    texts = [m["content"] for e in examples for m in e["messages"]]
    tok = train_bpe_from_texts(texts, vocab_size=600, special_tokens=["<|endoftext|>"])
    tok.save(root / "tok")
    torch.manual_seed(0)
    base = Decoder(ModelConfig(vocab_size=tok.vocab_size, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2,
                               head_dim=16, d_ff=128, max_seq_len=512))
    base.save_pretrained(root / "base", tokenizer_dir=root / "tok")
    with open(root / "sft.jsonl", "w") as f:
        for e in examples:
            f.write(json.dumps(e) + "\n")
    return root


def finetune_config(root: Path, method: str, out: Path, *extra: str):
    """A 4-step fine-tune of root/base on root/sft.jsonl (checkpoints every 2 steps), plus `extra` overrides."""
    overrides = [f"base={root / 'base'}", f"method={method}", f"data.train={root / 'sft.jsonl'}",
                 "data.eval_fraction=0.2", f"train.out_dir={out}", "train.batch_size=2", "train.seq_len=256",
                 "train.max_steps=4", "train.warmup_steps=1", "train.lr=1e-2", "train.eval_every=0",
                 "train.checkpoint_every=2", "train.sample_tokens=0", "train.progress=false", "train.plots=false",
                 "train.tensorboard=false", "train.log_every=1", "lora.r=4", *extra]
    return read_finetune_config(None, overrides)


def quiet(*args, **kwargs) -> None:
    """A log function that drops what it is given."""
