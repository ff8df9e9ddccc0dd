"""Chat SFT batches for the one Trainer: packed training rows, validation rows, and the loss on them.

    examples = tokenize_conversations(tok, load_sft_examples("data/sft.jsonl"))
    train = SFTBatches(examples, rows_per_step=16, seq_len=512, seed=0)          # a Trainer batch source
    trainer = Trainer(cfg, model, train, loss_fn=lambda m, b: sft_loss(m, b, cfg.train.loss_chunk_size))
    for batch in SFTEvalBatches(val_examples, batch_size=8, seq_len=512): ...    # every example once

A batch is a dict of int64 tensors [rows, seq_len] (packing.py `fill_rows`): input_ids, labels (next-token
targets already shifted, -100 where not trained), positions (restarting at 0 at each example),
document_ids (the example's place in its row, -1 on padding). The Decoder's `document_ids` keeps
attention inside each example, so a packed row's loss is the sum of its examples' losses alone.

Order: each epoch shuffles the examples with a generator seeded by (seed, epoch). With packing, that order
is packed best-fit-decreasing into rows of seq_len (longest first, ties in shuffled order) and the rows are
shuffled again; without packing each example is one right-padded row. Every rank draws the same global
batch of `rows_per_step` rows (train/batches.py); batches run on across epoch ends. The state is
(epoch, row): an epoch's rows are a function of the seed, so a resumed run draws the very same batches.
"""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import torch

from slmkit.data.loaders import distributed_rank
from slmkit.errors import DataError
from slmkit.finetune.packing import PieceReport, best_fit_decreasing, fill_rows, make_pieces
from slmkit.model.loss import IGNORE_INDEX
from slmkit.train.batches import summed_loss


class SFTBatches:
    """Endless global batches of `rows_per_step` rows [rows_per_step, seq_len] from tokenized examples."""

    def __init__(self, examples, rows_per_step: int, seq_len: int, seed: int = 0, pack: bool = True, pad_id: int = 0):
        if rows_per_step < 1 or seq_len < 1:
            raise DataError(f"rows_per_step ({rows_per_step}) and seq_len ({seq_len}) must be positive")
        self.rows_per_step, self.seq_len, self.seed, self.pack, self.pad_id = rows_per_step, seq_len, seed, pack, pad_id
        self.pieces, self.report = make_pieces(examples, seq_len)
        _warn_about(self.report, seq_len, "training")
        self.lengths = [len(p) for p in self.pieces]
        self.fingerprint = _fingerprint(self.pieces, seq_len, pack)
        self.epoch, self.row = 0, 0
        self._rows: list[list[int]] | None = None  # the current epoch's rows (lists of piece indices)

    # --- the batch-source interface --------------------------------------------------------------
    def next_batch(self) -> dict[str, torch.Tensor]:
        bins: list[list[int]] = []
        while len(bins) < self.rows_per_step:
            rows = self._epoch_rows()
            if self.row >= len(rows):
                self.epoch, self.row, self._rows = self.epoch + 1, 0, None
                continue
            take = rows[self.row:self.row + self.rows_per_step - len(bins)]
            bins.extend(take)
            self.row += len(take)
        return fill_rows(self.pieces, bins, self.seq_len, self.pad_id)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "row": self.row, "seed": self.seed, "fingerprint": self.fingerprint}

    def load_state_dict(self, state: dict) -> None:
        if state.get("fingerprint") != self.fingerprint:
            raise DataError("the SFT data, seq_len or packing differ from the checkpoint's, so the run cannot "
                            "resume exactly: use the same data and settings, or start a fresh run")
        self.seed, self.epoch, self.row, self._rows = int(state["seed"]), int(state["epoch"]), int(state["row"]), None

    # --- what an epoch holds ---------------------------------------------------------------------
    @property
    def rows_per_epoch(self) -> int:
        return len(self._epoch_rows())

    def _epoch_rows(self) -> list[list[int]]:
        if self._rows is None:
            rng = np.random.default_rng([self.seed, self.epoch])
            order = rng.permutation(len(self.pieces)).tolist()
            if self.pack:
                rows = best_fit_decreasing(self.lengths, self.seq_len, order)
                self._rows = [rows[i] for i in rng.permutation(len(rows))]
            else:
                self._rows = [[i] for i in order]
        return self._rows


class SFTEvalBatches:
    """Validation batches: every example once, in order, one right-padded example per row.

    Iterating gives dicts like SFTBatches' ([rows, longest example in the batch]); `pairs()` gives
    (input_ids, labels) for the Trainer's evaluation, which is exact without document_ids because each
    row holds one example and its padding comes after it. Under torchrun, rank r takes examples r, r + w, ...
    """

    def __init__(self, examples, batch_size: int, seq_len: int, pad_id: int = 0,
                 rank: int | None = None, world_size: int | None = None):
        default_rank, default_world = distributed_rank()
        rank = default_rank if rank is None else rank
        world_size = default_world if world_size is None else world_size
        self.batch_size, self.seq_len, self.pad_id = batch_size, seq_len, pad_id
        self.pieces, self.report = make_pieces(examples, seq_len)
        _warn_about(self.report, seq_len, "validation", fail_if_empty=False)
        self.mine = list(range(rank, len(self.pieces), world_size))

    def __len__(self) -> int:
        return -(-len(self.mine) // self.batch_size)

    def __iter__(self):
        for start in range(0, len(self.mine), self.batch_size):
            members = self.mine[start:start + self.batch_size]
            width = max(len(self.pieces[i]) for i in members)
            yield fill_rows(self.pieces, [[i] for i in members], width, self.pad_id)

    def pairs(self):
        for batch in self:
            yield batch["input_ids"], batch["labels"]


def sft_loss(model, batch: dict, loss_chunk_size: int | None = None):
    """(summed next-token loss over the batch's targets (+ MoE auxiliary losses per target), extras): the
    contract of train/batches.py `lm_loss`; the Trainer divides by the global count of targets."""
    labels = batch["labels"]
    count = (labels != IGNORE_INDEX).sum()
    kwargs = dict(positions=batch.get("positions"), document_ids=batch.get("document_ids"))
    if int(count) == 0:
        # No targets in this micro-batch: a zero that still reaches every parameter (DDP expects gradients),
        # where the mean loss would be 0/0 and its gradient NaN.
        out = model(batch["input_ids"], last_logits_only=True, **kwargs)
        return out.logits.float().sum() * 0.0, {}
    out = model(batch["input_ids"], labels, loss_chunk_size=loss_chunk_size, **kwargs)
    return summed_loss(out, count)


def _warn_about(report: PieceReport, seq_len: int, what: str, fail_if_empty: bool = True) -> None:
    if fail_if_empty and report.total and report.dropped == report.total:
        raise DataError(f"none of the {report.total} {what} examples has a target within seq_len + 1 = {seq_len + 1} "
                        "tokens (their assistant turns come later): raise seq_len or shorten the prompts")
    if report.total == 0 and fail_if_empty:
        raise DataError(f"no {what} examples")
    if report.truncated or report.dropped:
        warnings.warn(f"{report.truncated} of {report.total} {what} examples were longer than seq_len + 1 = "
                      f"{seq_len + 1} tokens and were cut to their start; {report.dropped} had no target left "
                      "and were dropped", stacklevel=3)


def _fingerprint(pieces, seq_len: int, pack: bool) -> str:
    h = hashlib.sha256(f"{seq_len} {pack} {len(pieces)}".encode())
    for piece in pieces:
        h.update(np.int64(len(piece)).tobytes())
        h.update(piece.inputs.tobytes())
        h.update(piece.labels.tobytes())
    return h.hexdigest()[:16]
