"""Batches of preference pairs as a reward model reads them: whole sequences, each side right-padded.

    train = PreferenceBatches(examples, pairs_per_step=16, seed=0, collate=collate_sequences)

A batch: chosen_ids / rejected_ids int64 [pairs, width] (prompt + completion, the last token included: the reward
is read there), chosen_mask / rejected_mask [pairs, width] (1 on real tokens), margin float32 [pairs], pair_index
[pairs]. Both sides share one width, so they go through the reward model in one forward.
"""

from __future__ import annotations

import numpy as np
import torch

from slmkit.align.preference_batches import SIDES, PairExample


def collate_sequences(examples: list[PairExample], indices: list[int], pad_id: int, reference=None) -> dict:
    """The batch dict (module docstring) of examples[i] for i in `indices`; `reference` is unused (the
    signature of preference_batches.collate_pairs)."""
    rows = {side: [np.append(getattr(examples[i], f"{side}_inputs"), getattr(examples[i], f"{side}_final"))
                   for i in indices] for side in SIDES}
    width = max(len(r) for side in SIDES for r in rows[side])
    batch = {}
    for side in SIDES:
        ids = np.full((len(indices), width), pad_id, dtype=np.int64)
        mask = np.zeros((len(indices), width), dtype=np.int64)
        for r, seq in enumerate(rows[side]):
            ids[r, :len(seq)], mask[r, :len(seq)] = seq, 1
        batch[f"{side}_ids"], batch[f"{side}_mask"] = torch.from_numpy(ids), torch.from_numpy(mask)
    batch["margin"] = torch.tensor([examples[i].margin for i in indices], dtype=torch.float32)
    batch["pair_index"] = torch.tensor(indices, dtype=torch.int64)
    return batch
