"""Tokenized SFT examples -> training pieces -> rows of a batch, several examples per row.

    pieces, report = make_pieces(examples, seq_len=512)      # truncate, shift, drop examples left without a target
    bins = best_fit_decreasing([len(p) for p in pieces], capacity=512, order=shuffled_indices)
    batch = fill_rows(pieces, bins, seq_len=512, pad_id=0)   # {"input_ids", "labels", "positions", "document_ids"}

A piece is one example ready to train: inputs = ids[:-1], labels = ids[1:] where train_mask[1:] is True,
else -100. An example of n tokens therefore fills n - 1 positions, and its last token is only a target:
the same loss as feeding all n tokens with -100 at the last position (TRL, torchtune), one position
cheaper, and why an example of seq_len + 1 tokens fits one row exactly. Labels come only from the
example's own tokens, so no example's first token is ever a target of the one packed before it.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np
import torch

from slmkit.errors import DataError
from slmkit.model.loss import IGNORE_INDEX


@dataclass
class Piece:
    inputs: np.ndarray  # int64 [m]
    labels: np.ndarray  # int64 [m], IGNORE_INDEX where not a target

    def __len__(self) -> int:
        return len(self.inputs)


@dataclass
class PieceReport:
    total: int = 0
    truncated: int = 0  # longer than seq_len + 1 tokens: kept their first seq_len + 1
    dropped: int = 0  # no target left (after truncation, or a single-token example)
    kept_indices: tuple[int, ...] = ()  # which input examples the pieces are, in order


def make_pieces(examples, seq_len: int) -> tuple[list[Piece], PieceReport]:
    """One Piece per example (SFTExample: ids, train_mask) that still has a target after truncation."""
    pieces, kept = [], []
    report = PieceReport(total=len(examples))
    for index, example in enumerate(examples):
        ids = np.asarray(example.ids, dtype=np.int64)
        mask = np.asarray(example.train_mask, dtype=bool)
        if ids.shape != mask.shape or ids.ndim != 1:
            raise DataError(f"example {index} has {ids.size} ids but {mask.size} mask entries; they must match")
        if len(ids) > seq_len + 1:
            ids, mask = ids[:seq_len + 1], mask[:seq_len + 1]  # keep the start: the prompt and the answer's beginning
            report.truncated += 1
        labels = np.where(mask[1:], ids[1:], IGNORE_INDEX)
        if not (labels != IGNORE_INDEX).any():
            report.dropped += 1
            continue
        pieces.append(Piece(ids[:-1], labels))
        kept.append(index)
    report.kept_indices = tuple(kept)
    return pieces, report


def best_fit_decreasing(lengths: list[int], capacity: int, order) -> list[list[int]]:
    """Bins (lists of indices into `lengths`, each summing to <= capacity): longest item first, each into
    the fullest bin it fits (a new bin when none does). Ties in length keep their place in `order`, so a
    shuffled `order` makes a different packing per epoch. Bins come out in the order they were opened."""
    by_length = sorted(order, key=lambda i: -lengths[i])  # stable: ties in `order`'s order
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (room left, bin index), sorted: the best fit is the first with room >= length
    for item in by_length:
        size = lengths[item]
        at = bisect.bisect_left(free, (size, -1))
        if at == len(free):
            bins.append([item])
            room, target = capacity - size, len(bins) - 1
        else:
            room, target = free.pop(at)
            bins[target].append(item)
            room -= size
        if room > 0:
            bisect.insort(free, (room, target))
    return bins


def fill_rows(pieces: list[Piece], bins: list[list[int]], seq_len: int, pad_id: int = 0) -> dict[str, torch.Tensor]:
    """A batch of len(bins) rows [rows, seq_len] int64: the pieces of each bin back to back, then padding.

    input_ids: token ids, pad_id on padding. labels: next-token targets, -100 where not trained and on
    padding. positions: index within its example (0 at each example's first token; 0 on padding).
    document_ids: the example's place in its row (0, 1, ...), -1 on padding.
    """
    rows = len(bins)
    input_ids = np.full((rows, seq_len), pad_id, dtype=np.int64)
    labels = np.full((rows, seq_len), IGNORE_INDEX, dtype=np.int64)
    positions = np.zeros((rows, seq_len), dtype=np.int64)
    document_ids = np.full((rows, seq_len), -1, dtype=np.int64)
    for row, members in enumerate(bins):
        at = 0
        for doc, index in enumerate(members):
            piece = pieces[index]
            end = at + len(piece)
            if end > seq_len:
                raise DataError(f"row {row} holds {end} tokens, more than seq_len {seq_len} (a packing bug)")
            input_ids[row, at:end] = piece.inputs
            labels[row, at:end] = piece.labels
            positions[row, at:end] = np.arange(len(piece))
            document_ids[row, at:end] = doc
            at = end
    return {"input_ids": torch.from_numpy(input_ids), "labels": torch.from_numpy(labels),
            "positions": torch.from_numpy(positions), "document_ids": torch.from_numpy(document_ids)}
