"""Packing log-likelihood requests so a shared context is computed once: the layout and its attention mask.

A question's choices share its context. A *segment* lays the context out once and each continuation (minus
its last token, which predicts nothing) after it, in one row:

    [ context c0 .. cL-1 ][ choice 1 ][ choice 2 ][ choice 3 ] ...
    positions 0 .. L-1      L ..        L ..        L ..        (each choice continues the context)

Attention: a context token sees the context tokens before it; a choice token sees the whole context and the
tokens of its own choice before it, never another choice's. So every choice's log-probs are what one forward
pass over context + choice would give, while the context is computed once and no row holds padding between
requests. Segments are packed several to a row (first fit, longest first) up to the window; a group whose
choices do not fit one window is split into several segments that repeat the context.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Request:
    index: int  # position in the caller's request list
    context: list[int]
    continuation: list[int]


@dataclass
class Segment:
    context: list[int]
    requests: list[Request]

    @property
    def length(self) -> int:
        return len(self.context) + sum(len(r.continuation) - 1 for r in self.requests)


def segments_of(requests: list[Request], max_length: int) -> list[Segment]:
    """Requests grouped by context, each group cut into segments of at most max_length tokens."""
    groups: dict[tuple[int, ...], list[Request]] = {}
    for r in requests:
        groups.setdefault(tuple(r.context), []).append(r)
    out = []
    for context, group in groups.items():
        segment = Segment(list(context), [])
        for r in group:
            if segment.requests and segment.length + len(r.continuation) - 1 > max_length:
                out.append(segment)
                segment = Segment(list(context), [])
            segment.requests.append(r)
        out.append(segment)
    return out


def pack_segments(segments: list[Segment], max_length: int) -> list[list[Segment]]:
    """Rows of segments, each row at most max_length tokens: first fit, longest segment first."""
    rows: list[list[Segment]] = []
    used: list[int] = []
    for segment in sorted(segments, key=lambda s: -s.length):
        for k, taken in enumerate(used):
            if taken + segment.length <= max_length:
                rows[k].append(segment)
                used[k] += segment.length
                break
        else:
            rows.append([segment])
            used.append(segment.length)
    return rows


@dataclass
class PackedBatch:
    ids: torch.Tensor  # [rows, width] int64
    positions: torch.Tensor  # [rows, width] int64
    mask: torch.Tensor  # [rows, 1, width, width] bool
    requests: list[Request]  # in the order of `predict_rows` / `predict_cols`
    predict_rows: torch.Tensor  # [total continuation tokens]: the row of the state predicting each token
    predict_cols: torch.Tensor  # [total continuation tokens]: its column


def packed_batch(rows: list[list[Segment]], device) -> PackedBatch:
    """Tensors for a forward pass over `rows` (Decoder(ids, positions=..., attention_mask=mask))."""
    width = max(sum(s.length for s in row) for row in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.int64)
    positions = torch.zeros(len(rows), width, dtype=torch.int64)
    segment = torch.full((len(rows), width), -1, dtype=torch.int64)
    branch = torch.full((len(rows), width), -1, dtype=torch.int64)
    requests, pred_rows, pred_cols = [], [], []
    for r, row in enumerate(rows):
        col = 0
        for k, seg in enumerate(row):
            n = len(seg.context)
            ids[r, col:col + n] = torch.tensor(seg.context)
            positions[r, col:col + n] = torch.arange(n)
            segment[r, col:col + n] = k
            last_context_col, col = col + n - 1, col + n
            for b, req in enumerate(seg.requests):
                tokens = req.continuation[:-1]
                m = len(tokens)
                if m:
                    ids[r, col:col + m] = torch.tensor(tokens)
                    positions[r, col:col + m] = torch.arange(n, n + m)
                    segment[r, col:col + m] = k
                    branch[r, col:col + m] = b
                requests.append(req)
                pred_rows += [r] * (m + 1)
                pred_cols += [last_context_col] + list(range(col, col + m))
                col += m
    return PackedBatch(ids.to(device), positions.to(device), shared_context_mask(segment, branch).to(device),
                       requests, torch.tensor(pred_rows, device=device), torch.tensor(pred_cols, device=device))


def shared_context_mask(segment: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
    """bool [rows, 1, width, width] from each token's segment (-1: padding) and branch (-1: context).
    A query sees earlier keys of its own segment that are context or its own branch; padding sees itself."""
    width = segment.shape[1]
    slots = torch.arange(width)
    earlier = slots[None, :] <= slots[:, None]  # [q, k]
    same_segment = (segment[:, :, None] == segment[:, None, :]) & (segment[:, None, :] >= 0)
    allowed_branch = (branch[:, None, :] == -1) | (branch[:, None, :] == branch[:, :, None])
    mask = (earlier[None] & same_segment & allowed_branch) | torch.eye(width, dtype=torch.bool)[None]
    return mask[:, None]
