"""`DedupPart`: what dedup reads of one part of the corpus — prepare's `Part` is one.

Declared here so that dedup depends on nothing of the stage that writes the parts (preparation
imports dedup, never the reverse). Documents are numbered within a part from 0.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class DedupPart(Protocol):
    meta: dict  # "num_perm": signature width, "bands": LSH bands

    @property
    def docs(self) -> int:
        """Documents in the part."""

    def column(self, name: str) -> np.ndarray:
        """[docs] per-document array: "exact" uint64 (hash of the normalised text), "source" uint8."""

    def band(self, b: int) -> np.ndarray:
        """[docs] uint64 LSH keys of band b."""

    def signature_rows(self, rows: np.ndarray) -> np.ndarray:
        """[len(rows), num_perm] uint32 MinHash signatures of the given documents."""
