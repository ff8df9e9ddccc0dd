"""Byte-level BPE tokenizers, trained from scratch or loaded from GPT-2 / Hugging Face files.

    from slmkit.tokenizer import train_bpe, load_tokenizer
    tok = train_bpe(["stories.txt"], vocab_size=4096)
    tok.save("runs/tok")
    tok = load_tokenizer("runs/tok")
    ids = tok.encode("Once upon a time")
"""

from slmkit.tokenizer.bpe import Tokenizer
from slmkit.tokenizer.hf_reader import load_gpt2_files, load_tokenizer
from slmkit.tokenizer.hf_writer import save_tokenizer
from slmkit.tokenizer.patterns import PATTERNS
from slmkit.tokenizer.trainer import learn_merges, train_bpe, train_bpe_from_texts

__all__ = [
    "PATTERNS",
    "Tokenizer",
    "learn_merges",
    "load_gpt2_files",
    "load_tokenizer",
    "save_tokenizer",
    "train_bpe",
    "train_bpe_from_texts",
]
