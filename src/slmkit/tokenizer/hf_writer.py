"""Writing a tokenizer in the Hugging Face format: tokenizer.json + tokenizer_config.json.

The files load with `tokenizers.Tokenizer.from_file` and transformers' AutoTokenizer. The functions
take a `bpe.Tokenizer` (they read its vocab, merges, special_tokens, pattern, normalize,
ignore_merges, eos_token and chat_template); this module does not import bpe, which uses it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from slmkit.fileio import write_text_atomic
from slmkit.tokenizer.byte_unicode import token_to_str

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"


def tokenizer_json(tok) -> dict:
    """The Hugging Face `tokenizers` description of `tok` (loads with Tokenizer.from_str)."""
    vocab = {token_to_str(b): i for i, b in sorted(tok.vocab.items())}
    strings = {i: token_to_str(b) for i, b in tok.vocab.items()}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": i,
                "content": s,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            for s, i in sorted(tok.special_tokens.items(), key=lambda kv: kv[1])
        ],
        "normalizer": {"type": tok.normalize} if tok.normalize else None,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": tok.pattern}, "behavior": "Isolated", "invert": False},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
            ],
        },
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": tok.ignore_merges,
            "vocab": vocab,
            "merges": [f"{strings[a]} {strings[b]}" for a, b in tok.merges],
        },
    }


def tokenizer_config(tok, model_max_length: int | None = None) -> dict:
    """tokenizer_config.json for transformers' PreTrainedTokenizerFast / AutoTokenizer."""
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "clean_up_tokenization_spaces": False,
        "model_max_length": model_max_length or 1_000_000_000_000_000_019_884_624_838_656,
        "added_tokens_decoder": {
            str(i): {
                "content": s,
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": True,
            }
            for s, i in sorted(tok.special_tokens.items(), key=lambda kv: kv[1])
        },
    }
    if tok.eos_token:
        config["eos_token"] = tok.eos_token
        config["pad_token"] = tok.eos_token
    if tok.chat_template:
        config["chat_template"] = tok.chat_template
    return config


def save_tokenizer(tok, directory: str | os.PathLike) -> None:
    """Write tokenizer.json and tokenizer_config.json into `directory`, each atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_text_atomic(directory / TOKENIZER_FILE, json.dumps(tokenizer_json(tok), ensure_ascii=False))
    write_text_atomic(directory / TOKENIZER_CONFIG_FILE, json.dumps(tokenizer_config(tok), indent=2))
