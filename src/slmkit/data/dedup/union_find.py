"""Union-find for near-duplicate groups that stores only the documents it has joined.

A dense parent array costs 4 bytes for every document of the corpus although, in real text, few
documents are ever joined (347 of 370k synthetic stories). Here a document that is its own root
(every document at first) is stored nowhere; a joined one (a non-root) has an entry in two sorted
arrays (document, parent), looked up with `searchsorted`. Memory follows the number of near
duplicates found, not the number of documents. Joins made since the last `flush` wait in a small
dict (one chunk of verified pairs' worth) and are then merged into the arrays in one insert.
The smaller index (earlier document) is always the root, as with the dense array it replaces.
"""

from __future__ import annotations

import numpy as np


class SparseUnionFind:
    def __init__(self, n: int):
        self.dtype = np.dtype(np.int32 if n < 2**31 else np.int64)
        self.docs = np.zeros(0, dtype=self.dtype)  # sorted: documents that have a parent (non-roots)
        self.parents = np.zeros(0, dtype=self.dtype)
        self.pending: dict[int, int] = {}  # joined since the last flush

    def __len__(self) -> int:
        """Documents joined to an earlier one (non-roots)."""
        return len(self.docs) + len(self.pending)

    def _parent(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Parents of `x` in the arrays (themselves for roots), and where x sits (hit: it is there)."""
        if not len(self.docs):
            return x, np.zeros(len(x), dtype=np.int64), np.zeros(len(x), dtype=bool)
        at = np.searchsorted(self.docs, x)
        at[at == len(self.docs)] = 0
        hit = self.docs[at] == x
        return np.where(hit, self.parents[at], x), at, hit

    def roots(self, x: np.ndarray) -> np.ndarray:
        """Roots of the documents `x` (vectorised pointer jumping; stored paths are compressed)."""
        self.flush()
        x = np.asarray(x, dtype=np.int64)
        r, at, hit = self._parent(x)
        while True:
            up = self._parent(r)[0]
            if (up == r).all():
                break
            r = up
        self.parents[at[hit]] = r[hit]
        return r

    def _root(self, i: int) -> int:
        """Root of one document, pending joins included (no compression: paths are short)."""
        while True:
            up = self.pending.get(i)
            if up is None and len(self.docs):
                at = int(np.searchsorted(self.docs, i))
                if at < len(self.docs) and self.docs[at] == i:
                    up = int(self.parents[at])
            if up is None:
                return i
            i = up

    def union(self, i: int, j: int) -> bool:
        ri, rj = self._root(i), self._root(j)
        if ri == rj:
            return False
        self.pending[max(ri, rj)] = min(ri, rj)  # a root gets its first parent: never stored before
        return True

    def flush(self) -> None:
        """Merge the pending joins into the sorted arrays (one insert, linear in the joins so far)."""
        if not self.pending:
            return
        new = np.array(sorted(self.pending.items()), dtype=self.dtype).reshape(-1, 2)
        self.pending.clear()
        where = np.searchsorted(self.docs, new[:, 0])
        self.docs = np.insert(self.docs, where, new[:, 0])
        self.parents = np.insert(self.parents, where, new[:, 1])

    def joined(self) -> np.ndarray:
        """Sorted documents that have an earlier document in their group."""
        self.flush()
        return self.docs.astype(np.int64)
