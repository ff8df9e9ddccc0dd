"""Batch loaders over token shards: random windows for training, sequential windows for evaluation.

    train = TrainBatches("runs/data", batch_size=8, seq_len=256, seed=0)   # rank/world_size from torchrun
    x, y = train.next_batch()              # [batch, seq_len] int64 each; y is x shifted by one token
    state = train.state_dict()             # save with a checkpoint; load_state_dict(state) resumes exactly
    for x, y in EvalBatches("runs/data", batch_size=8, seq_len=256): ...   # y == -100 on padding

Train windows (nanoGPT's get_batch) start at uniform random token positions of the split,
drawn from a generator seeded by (seed, rank, step): batch k is the same whenever it is drawn,
so the state is just the step count. Eval windows tile the split without overlap: over all
ranks, every token after the first is a target exactly once.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from slmkit.data.manifest import read_manifest
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
                 rank: int | None = None, world_size: int | None = None, tokenizer=None, verify: bool = True):
        self.stream = TokenStream(data_dir, split, verify=verify, tokenizer=tokenizer)
        if len(self.stream) < seq_len + 1:
            raise DataError(f"the {split} split has {len(self.stream)} tokens, fewer than seq_len + 1 = {seq_len + 1}")
        self.batch_size, self.seq_len, self.seed = batch_size, seq_len, seed
        self.rank, self.world_size = _resolve_rank(rank, world_size)
        self.step = 0

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y), each [batch_size, seq_len] int64."""
        rng = np.random.default_rng([self.seed, self.rank, self.step])
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
    """Non-overlapping windows in order; window w goes to rank w % world_size; padding targets are -100."""

    def __init__(self, data_dir, batch_size: int, seq_len: int, split: str = "val",
                 rank: int | None = None, world_size: int | None = None, tokenizer=None, verify: bool = True):
        self.stream = TokenStream(data_dir, split, verify=verify, tokenizer=tokenizer)
        self.batch_size, self.seq_len = batch_size, seq_len
        self.rank, self.world_size = _resolve_rank(rank, world_size)
        targets = max(0, len(self.stream) - 1)
        self.num_windows = -(-targets // seq_len)  # ceil
        self.my_windows = np.arange(self.rank, self.num_windows, self.world_size)
        self.position = 0  # index into my_windows

    def __len__(self) -> int:
        """Batches this rank still has to read from its start."""
        return -(-len(self.my_windows) // self.batch_size)

    def _window(self, w: int) -> tuple[np.ndarray, np.ndarray]:
        start = int(w) * self.seq_len
        length = min(self.seq_len + 1, len(self.stream) - start)
        tokens = self.stream.read(start, length)
        x = np.zeros(self.seq_len, dtype=np.int64)
        y = np.full(self.seq_len, IGNORE_INDEX, dtype=np.int64)
        x[:length - 1], y[:length - 1] = tokens[:-1], tokens[1:]
        return x, y

    def __iter__(self):
        while self.position < len(self.my_windows):
            chosen = self.my_windows[self.position:self.position + self.batch_size]
            self.position += len(chosen)
            xs, ys = zip(*(self._window(w) for w in chosen))
            yield torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))
        self.position = 0  # the next pass starts again

    def state_dict(self) -> dict:
        return {"position": self.position, "rank": self.rank, "world_size": self.world_size}

    def load_state_dict(self, state: dict) -> None:
        self.position = int(state["position"])
