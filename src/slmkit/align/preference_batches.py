"""Preference pairs -> token ids and completion masks -> batches of pairs for the one Trainer.

    examples = tokenize_pairs(tok, load_preference_pairs("data/prefs.jsonl"), seq_len=512)
    train = PreferenceBatches(examples, pairs_per_step=16, seed=0)       # a Trainer batch source
    for batch in PreferenceEvalBatches(held_out, batch_size=8): ...       # every held-out pair once

A pair renders prompt + chosen and prompt + rejected through the chat template; the scored tokens are the
completion's assistant spans (finetune/assistant_mask.py, with the prompt's own assistant turns as context),
end-of-turn included. Each side becomes inputs = ids[:-1] and labels = ids[1:] where scored, else -100. A side
longer than seq_len + 1 tokens loses the start of its prompt first, then the end of its reply (TRL's keep-end for
prompts), and is counted as truncated. A side with no scored token is an error naming the pair: its log-prob
would be 0 under policy and reference alike and the DPO loss would sit at ln 2 without a gradient.

A batch is a dict with the pairs first: chosen_input_ids / chosen_labels / rejected_input_ids /
rejected_labels int64 [pairs, width] (right-padded to the longest side in the batch: padding after the real
tokens leaves causal attention exact), chosen_length / rejected_length [pairs], pair_index [pairs], and,
once reference log-probs are attached (precomputed once), ref_chosen_logps / ref_rejected_logps float32
[pairs]. A reward model's batches come from another `collate` (reward_batches.py) over the same examples.
Training order: each epoch shuffles the pairs with a generator seeded by (seed, epoch); the state is
(epoch, position), so a resumed run draws the same batches.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from slmkit.align.preference_data import PreferencePair
from slmkit.data.loaders import distributed_rank
from slmkit.errors import DataError
from slmkit.finetune.assistant_mask import tokenize_chat
from slmkit.model.loss import IGNORE_INDEX

SIDES = ("chosen", "rejected")


@dataclass
class PairExample:
    """One tokenized pair: inputs and labels [m] (int64, -100 where not scored) of each side."""

    chosen_inputs: np.ndarray
    chosen_labels: np.ndarray
    rejected_inputs: np.ndarray
    rejected_labels: np.ndarray
    truncated: bool = False
    chosen_final: int = 0  # the last token of each side's (truncated) sequence: what a reward model reads
    rejected_final: int = 0
    margin: float = 0.0  # the record's preference strength, for a reward model's margin loss


def tokenize_pair(tokenizer, pair: PreferencePair, seq_len: int, index: int) -> PairExample:
    context = sum(m["role"] == "assistant" for m in pair.prompt)
    parts, truncated = {}, False
    for side in SIDES:
        where = f"pair {index} {side}"
        example = tokenize_chat(tokenizer, pair.prompt + getattr(pair, side), index=where, context_turns=context)
        ids, mask = np.asarray(example.ids, dtype=np.int64), np.asarray(example.train_mask, dtype=bool)
        if len(ids) > seq_len + 1:
            ids, mask, truncated = *_fit(ids, mask, seq_len + 1), True
        labels = np.where(mask[1:], ids[1:], IGNORE_INDEX)
        if not (labels != IGNORE_INDEX).any():
            raise DataError(f"{where} has an empty completion mask: its prompt fills all {seq_len} positions, so "
                            "no reply token is scored (DPO's loss would stay at ln 2); raise train.seq_len or "
                            "shorten the prompt")
        parts[f"{side}_inputs"], parts[f"{side}_labels"], parts[f"{side}_final"] = ids[:-1], labels, int(ids[-1])
    return PairExample(**parts, truncated=truncated, margin=pair.margin)


def _fit(ids: np.ndarray, mask: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """`limit` tokens of a side that is longer: the prompt loses its start first (one token of it is kept, so
    the first reply token is still a target), then the reply its end."""
    first = int(np.argmax(mask))  # the first scored token
    cut = min(len(ids) - limit, max(first - 1, 0))
    return ids[cut:][:limit], mask[cut:][:limit]


def tokenize_pairs(tokenizer, pairs: list[PreferencePair], seq_len: int) -> list[PairExample]:
    return [tokenize_pair(tokenizer, pair, seq_len, i) for i, pair in enumerate(pairs)]


def collate_pairs(examples: list[PairExample], indices: list[int], pad_id: int,
                  reference: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, torch.Tensor]:
    """The batch dict (module docstring) of examples[i] for i in `indices`."""
    chosen = [examples[i].chosen_inputs for i in indices]
    rejected = [examples[i].rejected_inputs for i in indices]
    width = max(len(a) for a in chosen + rejected)
    batch = {}
    for side, rows in (("chosen", chosen), ("rejected", rejected)):
        ids = np.full((len(indices), width), pad_id, dtype=np.int64)
        labels = np.full((len(indices), width), IGNORE_INDEX, dtype=np.int64)
        for r, i in enumerate(indices):
            n = len(rows[r])
            ids[r, :n], labels[r, :n] = rows[r], getattr(examples[i], f"{side}_labels")
        batch[f"{side}_input_ids"], batch[f"{side}_labels"] = torch.from_numpy(ids), torch.from_numpy(labels)
        batch[f"{side}_length"] = torch.tensor([len(a) for a in rows], dtype=torch.int64)
    batch["pair_index"] = torch.tensor(indices, dtype=torch.int64)
    if reference is not None:
        batch["ref_chosen_logps"] = torch.from_numpy(reference[0][indices]).float()
        batch["ref_rejected_logps"] = torch.from_numpy(reference[1][indices]).float()
    return batch


class PreferenceBatches:
    """Endless global batches of `pairs_per_step` pairs, reshuffled each epoch (module docstring)."""

    def __init__(self, examples: list[PairExample], pairs_per_step: int, seed: int = 0, pad_id: int = 0,
                 collate=collate_pairs):
        if not examples:
            raise DataError("no preference pairs to train on")
        if pairs_per_step < 1:
            raise DataError(f"pairs_per_step must be positive, got {pairs_per_step}")
        self.examples, self.pairs_per_step, self.seed, self.pad_id = examples, pairs_per_step, seed, pad_id
        self.collate = collate
        self.fingerprint = pairs_fingerprint(examples)
        self.reference: tuple[np.ndarray, np.ndarray] | None = None  # precomputed reference log-probs per pair
        self.epoch, self.position = 0, 0

    def next_batch(self) -> dict[str, torch.Tensor]:
        indices: list[int] = []
        while len(indices) < self.pairs_per_step:
            order = self._order()
            if self.position >= len(order):
                self.epoch, self.position = self.epoch + 1, 0
                continue
            take = order[self.position:self.position + self.pairs_per_step - len(indices)]
            indices.extend(take)
            self.position += len(take)
        return self.collate(self.examples, indices, self.pad_id, self.reference)

    def _order(self) -> list[int]:
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.examples)).tolist()

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed, "fingerprint": self.fingerprint}

    def load_state_dict(self, state: dict) -> None:
        if state.get("fingerprint") != self.fingerprint:
            raise DataError("the preference data or seq_len differ from the checkpoint's, so the run cannot resume "
                            "exactly: use the same data and settings, or start a fresh run")
        self.seed, self.epoch, self.position = int(state["seed"]), int(state["epoch"]), int(state["position"])


class PreferenceEvalBatches:
    """Every pair once, in order, `batch_size` pairs per batch; under torchrun rank r takes pairs r, r + w, ..."""

    def __init__(self, examples: list[PairExample], batch_size: int, pad_id: int = 0,
                 rank: int | None = None, world_size: int | None = None, collate=collate_pairs):
        default_rank, default_world = distributed_rank()
        rank = default_rank if rank is None else rank
        world_size = default_world if world_size is None else world_size
        self.examples, self.batch_size, self.pad_id, self.collate = examples, batch_size, pad_id, collate
        self.mine = list(range(rank, len(examples), world_size))
        self.reference: tuple[np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return -(-len(self.mine) // self.batch_size)

    def __iter__(self):
        for start in range(0, len(self.mine), self.batch_size):
            yield self.collate(self.examples, self.mine[start:start + self.batch_size], self.pad_id, self.reference)


def every_pair(examples: list[PairExample], batch_size: int, pad_id: int = 0):
    """Batches of all pairs in order (one process): what reference log-probs are precomputed over."""
    return PreferenceEvalBatches(examples, batch_size, pad_id, rank=0, world_size=1)


def pairs_fingerprint(examples: list[PairExample]) -> str:
    h = hashlib.sha256(f"{len(examples)}".encode())
    for e in examples:
        for array in (e.chosen_inputs, e.chosen_labels, e.rejected_inputs, e.rejected_labels):
            h.update(np.int64(len(array)).tobytes())
            h.update(array.tobytes())
        h.update(np.array([e.chosen_final, e.rejected_final], dtype=np.int64).tobytes())
        h.update(np.float64(e.margin).tobytes())
    return h.hexdigest()[:16]
