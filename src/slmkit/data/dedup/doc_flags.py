"""What dedup decided for every document, kept on disk: one byte a document (KEPT, EXACT, NEAR).

Stage 2 writes it, stage 3 and the manifest read it a part at a time. It lives in the run's work
directory and is rebuilt by every run (dedup always starts over), so it is scratch, not an output.
Reads and writes are plain file I/O of a range (at most 1 MB at a time), never a mapping, so
memory does not grow with the corpus.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

KEPT, EXACT, NEAR = 0, 1, 2  # near: an earlier near duplicate (not an exact one) stays


class DocFlags:
    """[docs] uint8 flags in a file; documents are numbered across parts in order (global index)."""

    def __init__(self, path: Path, sizes: list[int]):
        self.path = path
        self.offsets = np.cumsum([0] + list(sizes), dtype=np.int64)
        self.docs = int(self.offsets[-1])
        with open(path, "wb") as f:
            f.truncate(self.docs)  # all KEPT (a sparse file: nothing written yet)

    def read(self, lo: int, hi: int) -> np.ndarray:
        """Flags of documents [lo, hi)."""
        with open(self.path, "rb") as f:
            return np.fromfile(f, dtype=np.uint8, count=hi - lo, offset=lo)

    def write(self, lo: int, flags: np.ndarray) -> None:
        with open(self.path, "r+b") as f:
            f.seek(lo)
            f.write(np.ascontiguousarray(flags, dtype=np.uint8).tobytes())

    def mark(self, index: np.ndarray, flag: int) -> None:
        """Set the flag of the documents `index` (any order), rewriting only the blocks they are in."""
        index = np.sort(np.asarray(index, dtype=np.int64))
        block = index // MARK_BLOCK
        starts = np.flatnonzero(np.r_[True, block[1:] != block[:-1]]) if len(index) else []
        for a, b in zip(starts, list(starts[1:]) + [len(index)]):
            lo = int(block[a]) * MARK_BLOCK
            flags = self.read(lo, min(self.docs, lo + MARK_BLOCK))
            flags[index[a:b] - lo] = flag
            self.write(lo, flags)

    def part(self, k: int) -> np.ndarray:
        """Flags of the documents of part k."""
        return self.read(int(self.offsets[k]), int(self.offsets[k + 1]))

    def keep(self, k: int) -> np.ndarray:
        """[docs of part k] bool: documents that reach the shards."""
        return self.part(k) == KEPT

    def count(self, flag: int) -> int:
        total = 0
        for lo in range(0, self.docs, CHUNK):
            total += int((self.read(lo, min(self.docs, lo + CHUNK)) == flag).sum())
        return total


CHUNK = 1 << 20  # flags read at a time by `count` (1 MB)
MARK_BLOCK = 1 << 16  # flags rewritten at a time by `mark` (64 KB)
