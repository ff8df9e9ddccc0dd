"""Batch loaders over token shards: random windows for training, sequential windows for evaluation.

    train = TrainBatches("runs/data", batch_size=8, seq_len=256, seed=0)   # rank/world_size from torchrun
    x, y = train.next_batch()              # [batch, seq_len] int64 each; y is x shifted by one token
    state = train.state_dict()             # save with a checkpoint; load_state_dict(state) resumes exactly
    for x, y, doc_ids in EvalBatches("runs/data", batch_size=8, seq_len=256): ...   # y == -100: not scored

Train windows (nanoGPT's get_batch) start at uniform random token positions of the split,
drawn from a generator seeded by (seed, rank, step): batch k is the same whenever it is drawn,
so the state is just the step count. With `window_start="document"` a window is instead made of whole
documents drawn at random, each with the end-of-text before it, until it is full (the last one is cut): the
model reads every story from its first token, as the evaluation scores documents, and windows keep varying
across epochs (windows that began at a story start but then ran on through the stream in file order would be
the same few thousand windows every epoch, which a small model memorises).
Eval batches score each document of the split alone, in lm-eval's rolling windows packed into rows
(rolling_windows.py): over all ranks, every token of every document is a target exactly once.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from slmkit.data.manifest import read_manifest
from slmkit.data.rolling_windows import batches_of_rows, pack_windows
from slmkit.errors import DataError

IGNORE_INDEX = -100


def distributed_rank() -> tuple[int, int]:
    """(rank, world_size) from an initialised torch.distributed, else torchrun's env, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


class TokenStream:
    """The shards of one split as one read-only token sequence (memory-mapped, never loaded whole)."""

    def __init__(self, data_dir: str | Path, split: str = "train", verify: bool = True, tokenizer=None):
        self.manifest = read_manifest(data_dir)
        if tokenizer is not None:
            self.manifest.check_tokenizer(tokenizer)
        self.manifest.verify(split, checksums=verify)
        self.shards = self.manifest.memmaps(split)
        self.starts = np.cumsum([0] + [len(s) for s in self.shards])
        self.split = split

    def __len__(self) -> int:
        return int(self.starts[-1])

    def read(self, start: int, length: int) -> np.ndarray:
        """Tokens [start, start + length) as int64, across shard boundaries."""
        out = np.empty(length, dtype=np.int64)
        filled, pos = 0, start
        shard = int(np.searchsorted(self.starts, pos, side="right")) - 1
        while filled < length:
            offset = pos - self.starts[shard]
            take = min(length - filled, len(self.shards[shard]) - offset)
            out[filled:filled + take] = self.shards[shard][offset:offset + take]
            filled, pos, shard = filled + take, pos + take, shard + 1
        return out


def _resolve_rank(rank: int | None, world_size: int | None) -> tuple[int, int]:
    default_rank, default_world = distributed_rank()
    rank = default_rank if rank is None else rank
    world_size = default_world if world_size is None else world_size
    if not 0 <= rank < world_size:
        raise DataError(f"rank {rank} is outside world size {world_size}")
    return rank, world_size


class TrainBatches:
    """Endless random windows of `seq_len + 1` tokens; different ranks draw different windows."""

    def __init__(self, data_dir, batch_size: int, seq_len: int, seed: int = 0, split: str = "train",
                 rank: int | None = None, world_size: int | None = None, tokenizer=None, verify: bool = True,
                 window_start: str = "random"):
        self.stream = TokenStream(data_dir, split, verify=verify, tokenizer=tokenizer)
        if len(self.stream) < seq_len + 1:
            raise DataError(f"the {split} split has {len(self.stream)} tokens, fewer than seq_len + 1 = {seq_len + 1}")
        self.batch_size, self.seq_len, self.seed = batch_size, seq_len, seed
        self.rank, self.world_size = _resolve_rank(rank, world_size)
        self.step = 0
        self.documents = None
        if window_start == "document":
            self.documents = self._document_spans()
        elif window_start != "random":
            raise DataError(f"window_start must be 'random' or 'document', got {window_start!r}")

    def _document_spans(self) -> np.ndarray:
        """[n, 2] (start, end) of each document with the end-of-text before it: [eos, its tokens...]."""
        eos = self.stream.manifest.eos_id  # prepare appends it to every document
        ends = np.concatenate([np.flatnonzero(np.asarray(shard) == eos) + offset
                               for shard, offset in zip(self.stream.shards, self.stream.starts)])
        spans = np.stack([ends[:-1], ends[1:]], 1)  # eos i up to (not including) eos i + 1
        spans = spans[spans[:, 1] - spans[:, 0] > 1]  # at least one token after the end-of-text
        if not len(spans):
            raise DataError(f"the {self.stream.split} split has no two documents to draw whole: use "
                            "window_start='random'")
        return spans

    def _document_window(self, rng) -> np.ndarray:
        """seq_len + 1 tokens of whole documents drawn at random (the last one cut to fit)."""
        pieces, filled = [], 0
        while filled < self.seq_len + 1:
            start, end = self.documents[int(rng.integers(len(self.documents)))]
            take = min(int(end - start), self.seq_len + 1 - filled)
            pieces.append(self.stream.read(int(start), take))
            filled += take
        return np.concatenate(pieces)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y), each [batch_size, seq_len] int64."""
        rng = np.random.default_rng([self.seed, self.rank, self.step])
        if self.documents is not None:
            windows = np.stack([self._document_window(rng) for _ in range(self.batch_size)])
        else:
            starts = rng.integers(0, len(self.stream) - self.seq_len, size=self.batch_size)
            windows = np.stack([self.stream.read(int(s), self.seq_len + 1) for s in starts])
        self.step += 1
        return torch.from_numpy(windows[:, :-1].copy()), torch.from_numpy(windows[:, 1:].copy())

    def __iter__(self):
        while True:
            yield self.next_batch()

    def state_dict(self) -> dict:
        return {"step": self.step, "seed": self.seed, "rank": self.rank, "world_size": self.world_size}

    def load_state_dict(self, state: dict) -> None:
        if state.get("seed", self.seed) != self.seed:
            raise DataError(f"loader state was saved with seed {state['seed']}, this loader uses {self.seed}")
        self.step = int(state["step"])


class EvalBatches:
    """The split's documents (its token stream cut at end-of-text), each scored alone in rolling windows of
    `seq_len` packed into rows (rolling_windows.py); row r goes to rank r % world_size. Batches are
    (x, y, document_ids), each [batch, seq_len] int64: y == -100 where nothing is scored, document_ids
    tells the packed windows of a row apart (-1 on padding)."""

    def __init__(self, data_dir, batch_size: int, seq_len: int, split: str = "val",
                 rank: int | None = None, world_size: int | None = None, tokenizer=None, verify: bool = True):
        stream = TokenStream(data_dir, split, verify=verify, tokenizer=tokenizer)
        self.tokens = stream.read(0, len(stream))  # a held-out split is small enough to hold
        self.eos = stream.manifest.eos_id
        ends = np.flatnonzero(self.tokens == self.eos)
        starts = np.concatenate([[0], ends + 1])
        ends = np.concatenate([ends, [len(self.tokens)]])
        keep = ends > starts  # a trailing piece without end-of-text is a document too; empty ones are not
        self.documents = list(zip(starts[keep].tolist(), ends[keep].tolist()))
        self.batch_size, self.seq_len = batch_size, seq_len
        self.rank, self.world_size = _resolve_rank(rank, world_size)
        self.rows = pack_windows([e - s for s, e in self.documents], seq_len)
        self.num_rows = len(self.rows)
        self.my_rows = np.arange(self.rank, self.num_rows, self.world_size)
        self.position = 0  # index into my_rows

    def __len__(self) -> int:
        """Batches this rank still has to read from its start."""
        return -(-len(self.my_rows) // self.batch_size)

    def _full(self, d: int) -> np.ndarray:
        start, end = self.documents[d]
        return np.concatenate([[self.eos], self.tokens[start:end]])

    def __iter__(self):
        while self.position < len(self.my_rows):
            chosen = self.my_rows[self.position:self.position + self.batch_size]
            self.position += len(chosen)
            batch = next(batches_of_rows([self.rows[r] for r in chosen], self._full, self.seq_len, len(chosen)))
            yield tuple(torch.from_numpy(a) for a in batch)
        self.position = 0  # the next pass starts again

    def state_dict(self) -> dict:
        return {"position": self.position, "rank": self.rank, "world_size": self.world_size}

    def load_state_dict(self, state: dict) -> None:
        self.position = int(state["position"])
