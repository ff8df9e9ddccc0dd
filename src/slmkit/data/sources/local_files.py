"""Documents from local files and globs: .txt (split at a delimiter), .jsonl and .parquet (a text field).

Files are read in chunks, never whole, so memory does not grow with file size. Every problem
(no match, unreadable, not UTF-8, missing field) is a `DataError` naming the file.
"""

from __future__ import annotations

import codecs
import glob
import json
import re
from collections.abc import Iterator
from pathlib import Path

from slmkit.errors import DataError

CHUNK_BYTES = 1 << 22
SUFFIXES = (".txt", ".jsonl", ".parquet")


def expand_paths(patterns: list[str]) -> list[Path]:
    """Paths and globs -> existing files, in a stable order; no match is an error."""
    files: list[Path] = []
    for pattern in patterns:
        pattern = str(Path(pattern).expanduser())
        matches = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else [pattern]
        matches = [m for m in matches if not Path(m).is_dir()]
        if not matches or not Path(matches[0]).exists():
            raise DataError(f"no input file matches '{pattern}'")
        files.extend(Path(m) for m in matches)
    for f in files:
        if f.suffix.lower() not in SUFFIXES:
            raise DataError(f"{f}: unsupported file type '{f.suffix}' (use {', '.join(SUFFIXES)})")
    return files


def _delimiter_pattern(delimiter: str) -> re.Pattern:
    if delimiter == "blank_line":
        return re.compile(r"\n[ \t\r]*\n")
    if delimiter == "line":
        return re.compile(r"\n")
    if not delimiter:
        raise DataError("the .txt document delimiter is empty (use e.g. '<|endoftext|>', 'blank_line' or 'line')")
    return re.compile(re.escape(delimiter.encode().decode("unicode_escape")))


def read_txt(path: Path, delimiter: str) -> Iterator[str]:
    """Documents of a text file separated by `delimiter` (streamed; pieces that are only whitespace are skipped)."""
    pattern = _delimiter_pattern(delimiter)
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    buffer = ""
    consumed = 0
    try:
        with open(path, "rb") as f:
            while True:
                raw = f.read(CHUNK_BYTES)
                try:
                    buffer += decoder.decode(raw, final=not raw)
                except UnicodeDecodeError as e:
                    raise DataError(f"{path}: not valid UTF-8 near byte {consumed + e.start}") from None
                consumed += len(raw)
                pieces = pattern.split(buffer)
                # the last piece may continue in the next chunk (or be cut inside a delimiter)
                buffer = pieces.pop() if raw else ""
                for piece in pieces + ([] if raw else [buffer]):
                    if piece.strip():
                        yield piece
                if not raw:
                    return
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}") from None


def read_jsonl(path: Path, text_field: str) -> Iterator[str]:
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}:{number}: not valid JSON ({e.msg})") from None
                if not isinstance(row, dict) or text_field not in row:
                    raise DataError(f"{path}:{number}: no '{text_field}' field (set text_field to the right key)")
                text = row[text_field]
                if isinstance(text, str) and text.strip():
                    yield text
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not valid UTF-8 ({e.reason})") from None
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}") from None


def read_parquet(path: Path, text_field: str) -> Iterator[str]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError("reading .parquet needs pyarrow: pip install pyarrow") from None
    try:
        table = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a bad file
        raise DataError(f"{path}: not a readable parquet file ({' '.join(str(e).split())})") from None
    if text_field not in table.schema_arrow.names:
        raise DataError(f"{path}: no '{text_field}' column (columns: {', '.join(table.schema_arrow.names)})")
    for batch in table.iter_batches(batch_size=4096, columns=[text_field]):
        for text in batch.column(0).to_pylist():
            if isinstance(text, str) and text.strip():
                yield text


def read_files(patterns: list[str], delimiter: str = "<|endoftext|>", text_field: str = "text") -> Iterator[str]:
    """Every document of every matching file, file by file."""
    for path in expand_paths(patterns):
        suffix = path.suffix.lower()
        if suffix == ".txt":
            yield from read_txt(path, delimiter)
        elif suffix == ".jsonl":
            yield from read_jsonl(path, text_field)
        else:
            yield from read_parquet(path, text_field)
