"""Distributed checkpoints (torch.distributed.checkpoint, DCP) of a model split over a mesh, readable under any
other mesh or by a single process.

    save_sharded(directory, module, optimizers)   # collective: every rank writes its own shards in parallel
    load_sharded(directory, module, optimizers)   # every rank reads the pieces its layout needs

A run under train.mesh with tp or pp writes its model and optimizer state this way, into `distributed/` inside
the checkpoint directory (beside trainer_state.json, rng.pt and config.json, which rank 0 writes as for any
checkpoint). Nothing is gathered to one process: each rank saves the shards it holds (DTensor pieces, this
pipeline stage's layers), and DCP's metadata records each tensor's global shape and which file holds which
piece, so a load under another layout reads exactly the pieces it needs (resharding on the fly).

Tensors are keyed by the full decoder's parameter names (pipeline stages keep them, train/pipeline_parallel.py), and the
optimizer state is flattened to one entry per parameter ("state.blocks.0.attn.q_proj.weight.exp_avg"), so a
pipeline rank that holds some layers loads their entries alone. An empty optimizer (a fresh resume) gets its
state initialised by torch's `get_state_dict` before the load, so the moments have somewhere to go.
"""

from __future__ import annotations

from pathlib import Path

import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

SHARDED_DIR = "distributed"
METADATA = ".metadata"
OPTIONS = StateDictOptions(flatten_optimizer_state_dict=True)


def sharded_state(module, optimizers) -> dict:
    """{"model": ..., "optimizer": ...} as this rank holds them (DTensors where sharded)."""
    model_state, optimizer_state = get_state_dict(module, optimizers, options=OPTIONS)
    return {"model": model_state, "optimizer": optimizer_state}


def save_sharded(directory: Path, module, optimizers) -> None:
    """Write this rank's shards into directory/distributed (collective)."""
    dcp.save(sharded_state(module, optimizers), checkpoint_id=str(Path(directory) / SHARDED_DIR))


def is_sharded(directory: Path) -> bool:
    return (Path(directory) / SHARDED_DIR / METADATA).is_file()


def load_sharded(directory: Path, module, optimizers, optimizer_aliases: dict[str, str] | None = None) -> None:
    """Fill `module` and `optimizers` from directory/distributed, whatever layout wrote it (collective under
    torchrun; a single process reads every piece). `optimizer_aliases` {parameter: parameter in the checkpoint}
    reads a parameter's optimizer state under another name (a tied head's copy takes the embedding's)."""
    state = sharded_state(module, optimizers)
    aliased = {}  # my flattened key -> the checkpoint's
    for key in state["optimizer"]:
        for mine, theirs in (optimizer_aliases or {}).items():
            for kind in ("state.", "param_groups."):
                if key.startswith(f"{kind}{mine}."):
                    aliased[key] = f"{kind}{theirs}." + key[len(f"{kind}{mine}."):]
    state["optimizer"] = {aliased.get(key, key): value for key, value in state["optimizer"].items()}
    dcp.load(state, checkpoint_id=str(Path(directory) / SHARDED_DIR))
    back = {theirs: mine for mine, theirs in aliased.items()}
    state["optimizer"] = {back.get(key, key): value for key, value in state["optimizer"].items()}
    set_state_dict(module, optimizers, model_state_dict=state["model"], optim_state_dict=state["optimizer"],
                   options=OPTIONS)
