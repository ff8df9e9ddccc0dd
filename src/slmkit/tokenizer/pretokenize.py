"""Cutting text into pre-tokens, and cutting big inputs into chunks that can be processed apart.

A chunk boundary is *safe* when pre-tokenizing the two sides separately gives the same pieces
as pre-tokenizing the whole: at a special token (text is split there first), or at a single
space between two non-space characters ("word| next"). No piece of the GPT-2, Llama 3 or Qwen
patterns spans that point: pieces that contain a space inside are whitespace runs, and the
right side's " next" is matched by an optional-leading-space alternative either way. (Cutting
after a newline is *not* safe: a trailing " \n" at the end of a chunk becomes one piece.)
"""

from __future__ import annotations

import re as std_re
from collections.abc import Iterable, Iterator

import regex

# Compiled with `regex`, the engine the patterns use, so \S means exactly what it means there.
SAFE_CUT = regex.compile(r"(?<=\S) (?=\S)")
_LAST_SAFE_CUT = regex.compile(r"(?r)(?<=\S) (?=\S)")  # (?r): search backwards from the end


def special_splitter(specials: Iterable[str]) -> std_re.Pattern | None:
    """A regex that splits text on special tokens, keeping them; longest first so overlaps work."""
    specials = sorted(set(specials), key=len, reverse=True)
    if not specials:
        return None
    return std_re.compile("(" + "|".join(std_re.escape(s) for s in specials) + ")")


def split_on_specials(text: str, splitter: std_re.Pattern | None) -> list[str]:
    """['ordinary', '<|endoftext|>', 'ordinary', ...]: odd positions are the special tokens."""
    if splitter is None:
        return [text]
    return splitter.split(text)


def last_safe_cut(text: str, specials: Iterable[str] = ()) -> int:
    """The largest index i such that text[:i] and text[i:] pre-tokenize independently (0 if none)."""
    best = 0
    for special in specials:
        pos = text.rfind(special)
        if pos > 0:
            best = max(best, pos)
    match = _LAST_SAFE_CUT.search(text, best)
    return match.start() if match else best


def iter_text_chunks(path: str, chunk_bytes: int = 4 << 20, specials: Iterable[str] = ()) -> Iterator[str]:
    """Stream a UTF-8 file as str chunks of about `chunk_bytes`, cut only at safe boundaries."""
    specials = list(specials)
    buffer = ""
    with open(path, "r", encoding="utf-8", newline="") as f:
        while True:
            block = f.read(chunk_bytes)
            if not block:
                break
            buffer += block
            if len(buffer) < chunk_bytes:
                continue
            cut = last_safe_cut(buffer, specials)
            if cut > 0:
                yield buffer[:cut]
                buffer = buffer[cut:]
    if buffer:
        yield buffer


def compile_pattern(pattern: str) -> regex.Pattern:
    return regex.compile(pattern)
