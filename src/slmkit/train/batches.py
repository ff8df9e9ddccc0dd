"""What a Trainer consumes: one global batch per optimizer step, split into micro-batches per rank.

    source = GlobalBatches(TrainBatches(data_dir, batch_size=rows_per_step, seq_len=256, rank=0, world_size=1))
    batch = source.next_batch()                    # (x, y): [rows_per_step, seq] each
    micro = micro_batch(batch, index=m, rank=r, rows=b, world_size=w)

Every rank draws the same global batch (rows_per_step = micro-batch × accumulation × world size) and
takes its own rows, so the data a run sees depends on the global batch alone: 2 processes × batch 4,
1 process × 2 accumulation steps × batch 4 and 1 process × batch 8 train on the same sequences, and a
run can resume with a different number of processes. Reading the extra rows is cheap (memmap slices).

Any object with `next_batch()`, `state_dict()` and `load_state_dict()` whose batches are tuples (or
dicts) of tensors with the rows first works: fine-tuning and DPO bring their own.
"""

from __future__ import annotations

import torch

from slmkit.model.loss import IGNORE_INDEX


class GlobalBatches:
    """Adapts a loader drawing `rows_per_step` rows per call (its state is the number of draws)."""

    def __init__(self, loader):
        self.loader = loader

    def next_batch(self):
        return self.loader.next_batch()

    def state_dict(self) -> dict:
        return self.loader.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.loader.load_state_dict(state)


def micro_batch(batch, index: int, rank: int, rows: int, world_size: int):
    """Rows [(index · world_size + rank) · rows, + rows) of every tensor in `batch`."""
    start = (index * world_size + rank) * rows
    if isinstance(batch, dict):
        return {k: v[start:start + rows] for k, v in batch.items()}
    return tuple(t[start:start + rows] for t in batch)


def batch_rows(batch) -> int:
    first = next(iter(batch.values())) if isinstance(batch, dict) else batch[0]
    return int(first.shape[0])


def to_device(batch, device: torch.device):
    if isinstance(batch, dict):
        return {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    return tuple(t.to(device, non_blocking=True) for t in batch)


def count_targets(batch) -> int:
    """Loss weight of a language-modelling batch (x, y): the targets that are not -100."""
    targets = batch["labels"] if isinstance(batch, dict) else batch[1]
    return int((targets != IGNORE_INDEX).sum())


def lm_loss(model, batch, loss_chunk_size: int | None = None):
    """Summed next-token cross-entropy (+ MoE auxiliary losses, per token) and extra metrics."""
    x, y = (batch["input_ids"], batch["labels"]) if isinstance(batch, dict) else batch
    out = model(x, y, loss_chunk_size=loss_chunk_size)
    return summed_loss(out, (y != IGNORE_INDEX).sum())


def summed_loss(out, count: torch.Tensor):
    """(the mean loss of a DecoderOutput times its `count` targets, + MoE auxiliary losses per target, extras)."""
    loss = out.loss * count
    extras = {}
    if out.aux_loss is not None:
        loss = loss + out.aux_loss * count
        extras["aux_loss"] = out.aux_loss.detach()
    return loss, extras
