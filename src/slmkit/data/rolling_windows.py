"""Scoring windows for held-out text: each document alone, in lm-eval's rolling windows, packed into rows.

The definition (lm-eval's `loglikelihood_rolling`: `get_rolling_token_windows(context_len=1)` +
`make_disjoint_window`). A document of n tokens t[0..n) is written `full = [end-of-text] + t`, so the
end-of-text prefix conditions its first token. With L = the window length:

- window 1 predicts t[0..min(L, n)) from [prefix] + t[0..L-1);
- each later window predicts the next L tokens (fewer in the last) from the one token before them plus those
  tokens minus the last; the last window keeps a full L-token input, so its first targets see more context.

Every token of the document is a target exactly once; the end-of-text after the document is not (lm-eval
scores the document's text). A window is a span (s, c, m) of `full`: inputs full[s : c+m-1], scored targets
full[c : c+m] at its last m input positions.

Packing: windows are laid into rows of L positions in order, several per row, each with its own document id
(`Decoder(document_ids=...)` keeps attention inside a window and restarts positions at its start), so a
packed row computes exactly what its windows would alone, without the padding of one window per row.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from slmkit.errors import DataError

IGNORE_INDEX = -100


def window_spans(n_tokens: int, max_length: int) -> list[tuple[int, int, int]]:
    """(s, c, m) spans of `full` ([prefix] + the document's n_tokens tokens) covering every token once."""
    if max_length < 1:
        raise DataError(f"the window length must be at least 1, not {max_length}")
    if n_tokens == 0:
        return []
    first = min(max_length, n_tokens)
    spans = [(0, 1, first)]
    predicted = first
    while predicted < n_tokens:
        count = min(n_tokens - predicted, max_length)
        end = predicted + count  # in document positions; full positions are one more
        spans.append((max(0, end - max_length - 1) + 1, predicted + 1, count))
        predicted = end
    return spans


def rolling_windows(tokens: Sequence[int], prefix_id: int, max_length: int) -> Iterator[tuple[list[int], list[int]]]:
    """(context ids, continuation ids) of each window, as lm-eval's loglikelihood requests."""
    full = [prefix_id] + list(tokens)
    for s, c, m in window_spans(len(tokens), max_length):
        yield full[s:c], full[c:c + m]


@dataclass(frozen=True)
class PackedWindow:
    document: int  # index of the document in the caller's list
    start: int  # s: first input position in full
    context_end: int  # c: first target position in full
    targets: int  # m

    @property
    def length(self) -> int:
        return self.context_end + self.targets - 1 - self.start


def pack_windows(document_lengths: Sequence[int], max_length: int) -> list[list[PackedWindow]]:
    """Rows of windows (each row at most max_length positions), documents and windows in order."""
    rows: list[list[PackedWindow]] = []
    used = max_length  # forces a new row for the first window
    for d, n in enumerate(document_lengths):
        for s, c, m in window_spans(int(n), max_length):
            window = PackedWindow(d, s, c, m)
            if used + window.length > max_length:
                rows.append([])
                used = 0
            rows[-1].append(window)
            used += window.length
    return rows


def row_arrays(row: list[PackedWindow], full_of, max_length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, document_ids), each [max_length] int64, for one packed row. `full_of(d)` returns document d's
    `full` token array ([prefix] + tokens). y is -100 where nothing is scored; document_ids -1 on padding."""
    x = np.zeros(max_length, dtype=np.int64)
    y = np.full(max_length, IGNORE_INDEX, dtype=np.int64)
    ids = np.full(max_length, -1, dtype=np.int64)
    pos = 0
    for k, w in enumerate(row):
        full = full_of(w.document)
        n = w.length
        x[pos:pos + n] = full[w.start:w.start + n]
        y[pos + n - w.targets:pos + n] = full[w.context_end:w.context_end + w.targets]
        ids[pos:pos + n] = k
        pos += n
    return x, y, ids


def batches_of_rows(rows: list[list[PackedWindow]], full_of, max_length: int, batch_size: int):
    """(x, y, document_ids) batches [<= batch_size, max_length] int64 over `rows`, in order."""
    for first in range(0, len(rows), batch_size):
        arrays = [row_arrays(r, full_of, max_length) for r in rows[first:first + batch_size]]
        yield tuple(np.stack(a) for a in zip(*arrays))
