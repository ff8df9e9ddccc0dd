"""The `tokenizers` library (Rust) as a fast backend on exactly our vocabulary and merges.

Tests prove it gives the same ids as the pure-Python encoder; it is only used for bulk encoding.
"""

from __future__ import annotations

import json

import tokenizers

from slmkit.tokenizer.hf_format import tokenizer_json


def build_fast_tokenizer(tok) -> tokenizers.Tokenizer:
    return tokenizers.Tokenizer.from_str(json.dumps(tokenizer_json(tok), ensure_ascii=False))
