"""Counting pre-tokens over large inputs, in parallel, streaming: the only full pass BPE training makes."""

from __future__ import annotations

import multiprocessing as mp
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from slmkit.errors import TokenizerError
from slmkit.tokenizer.pretokenize import compile_pattern, iter_text_chunks, special_splitter, split_on_specials

_pattern = None
_splitter = None


def _init(pattern: str, specials: list[str]) -> None:
    global _pattern, _splitter
    _pattern = compile_pattern(pattern)
    _splitter = special_splitter(specials)


def _count_chunk(text: str) -> Counter:
    counts: Counter = Counter()
    for k, part in enumerate(split_on_specials(text, _splitter)):
        if k % 2 == 0 and part:  # odd parts are special tokens: never part of a merge
            counts.update(_pattern.findall(part))
    return counts


def _chunks(paths: list[Path], specials: list[str], chunk_bytes: int) -> Iterable[str]:
    for path in paths:
        try:
            yield from iter_text_chunks(str(path), chunk_bytes, specials)
        except UnicodeDecodeError as e:
            raise TokenizerError(
                f"{path} is not UTF-8 text (invalid byte at offset ~{e.start}); convert it with iconv first"
            ) from None


def count_pretokens(
    paths: list[str | os.PathLike],
    pattern: str,
    special_tokens: list[str],
    num_workers: int | None = None,
    chunk_bytes: int = 1 << 20,
) -> Counter:
    """{pre-token string: occurrences} over all files, never holding a whole file in memory."""
    paths = [Path(p) for p in paths]
    for path in paths:
        if not path.is_file():
            raise TokenizerError(f"input file not found: {path}")
    num_workers = num_workers or os.cpu_count() or 1
    total: Counter = Counter()
    chunks = _chunks(paths, special_tokens, chunk_bytes)
    if num_workers <= 1:
        _init(pattern, special_tokens)
        for chunk in chunks:
            total.update(_count_chunk(chunk))
        return total
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with ctx.Pool(num_workers, initializer=_init, initargs=(pattern, special_tokens)) as pool:
        # imap keeps only a few chunks in flight, so memory stays flat for multi-GB inputs.
        for counts in pool.imap_unordered(_count_chunk, chunks):
            total.update(counts)
    return total
