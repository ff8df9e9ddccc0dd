"""Small file helpers shared by the stages: checksums and atomic writes.

Every file and directory slmkit writes goes through `atomic_file` or `atomic_directory`: the content
is written under a temporary name beside its destination and renamed into place when complete, so a
reader (or a run killed half-way) sees the old version or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file, read in 4 MiB blocks (shards and checkpoints can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write; it replaces `path` when the block succeeds
    (and is deleted when it fails)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike, data: dict, indent: int = 1) -> None:
    write_text_atomic(path, json.dumps(data, indent=indent) + "\n")


@contextlib.contextmanager
def atomic_directory(directory: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary directory beside `directory`; when the block succeeds it replaces
    `directory` whole (an existing one is moved aside first, then deleted). On failure it is deleted
    and `directory` is untouched."""
    tmp = temporary_sibling(directory)
    try:
        yield tmp
        publish_directory(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def temporary_sibling(directory: str | os.PathLike) -> Path:
    """A new empty directory beside `directory` to fill and then `publish_directory` (for a directory
    written over a longer time than one `with` block, e.g. by a writer object)."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))


def publish_directory(tmp: Path, directory: str | os.PathLike) -> None:
    """Rename the filled temporary directory `tmp` to `directory`, replacing an existing one whole."""
    directory = Path(directory)
    _fsync_directory(tmp)
    if directory.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old-", dir=directory.parent))
        os.replace(directory, old / directory.name)
        os.replace(tmp, directory)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, directory)
    _fsync_directory(directory.parent)


def is_temporary(path: Path) -> bool:
    """True for what `atomic_file` / `atomic_directory` leave behind when a process is killed."""
    return path.name.startswith(".") and (".tmp-" in path.name or ".old-" in path.name)


def _fsync_directory(path: Path) -> None:
    """Flush a directory's entries to disk (best effort: not every filesystem allows it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
