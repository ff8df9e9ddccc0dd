"""Measuring a tokenizer on text: compression in bytes per token."""

from __future__ import annotations

from pathlib import Path

from slmkit.tokenizer.bpe import Tokenizer


def bytes_per_token(tok: Tokenizer, paths: list[str | Path], sample_bytes: int = 2_000_000) -> float:
    """UTF-8 bytes per token over (up to) the first `sample_bytes` of the given files."""
    total_bytes = total_tokens = 0
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read(max(0, sample_bytes - total_bytes))
        if not text:
            continue
        total_bytes += len(text.encode("utf-8"))
        total_tokens += sum(len(ids) for ids in tok.encode_batch([text]))
        if total_bytes >= sample_bytes:
            break
    return total_bytes / max(total_tokens, 1)
