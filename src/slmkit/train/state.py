"""Moving training state between a live (possibly DDP/FSDP-wrapped) model and checkpoint files.

The collective parts live here: under FSDP every rank must join in gathering full tensors
(`get_model_state_dict` with `full_state_dict=True`), and every rank's RNG state is gathered to
rank 0 so that a resumed multi-process run continues each rank's random stream.
"""

from __future__ import annotations

import torch
import torch.distributed as torch_dist
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from slmkit.errors import CheckpointError
from slmkit.train import checkpointing as ckpt
from slmkit.train.distributed import unwrap
from slmkit.train.weights import FullWeights

FULL_ON_CPU = StateDictOptions(full_state_dict=True, cpu_offload=True)
FULL = StateDictOptions(full_state_dict=True)


def torch_optimizers(optimizer):
    """What torch's state-dict helpers take: the optimizer, or the list a CombinedOptimizer (optim.py) holds."""
    return getattr(optimizer, "optimizers", optimizer)


def gather_state(model, optimizer, dist) -> tuple[dict, dict, list]:
    """(model state, optimizer state keyed by parameter name, [rng state per rank]); collective."""
    module = unwrap(model)
    model_state = get_model_state_dict(module, options=FULL_ON_CPU)
    optimizer_state = get_optimizer_state_dict(module, torch_optimizers(optimizer), options=FULL_ON_CPU)
    rng = ckpt.rng_state()
    if dist.enabled:
        ranks = [None] * dist.world_size
        torch_dist.all_gather_object(ranks, rng)
    else:
        ranks = [rng]
    return model_state, optimizer_state, ranks


def restore_state(directory, model, optimizer, scaler, model_config, dist, weights=None) -> dict:
    """Load a checkpoint into the live model and optimizer on every rank; returns its trainer state.
    `weights` (default FullWeights) reads the checkpoint's tensors; a non-strict one restores part of the model."""
    weights = weights or FullWeights()
    state = ckpt.verify_checkpoint(directory, checksums=dist.is_main)
    module = unwrap(model)
    model_state = weights.read(directory, model_config)
    try:
        set_model_state_dict(module, model_state, options=StateDictOptions(full_state_dict=True, strict=weights.strict))
    except (RuntimeError, KeyError, ValueError) as e:
        raise CheckpointError(f"{directory}: the weights do not fit this model ({str(e).splitlines()[0]}); "
                              "was it trained with a different model config?") from None
    files, rng = ckpt.load_training_files(directory)
    try:
        set_optimizer_state_dict(module, torch_optimizers(optimizer), files["optimizer"], options=FULL)
    except (RuntimeError, KeyError, ValueError) as e:
        raise CheckpointError(f"{directory}: the optimizer state does not fit ({str(e).splitlines()[0]})") from None
    if scaler is not None and files.get("scaler"):
        scaler.load_state_dict(files["scaler"])
    ranks = rng.get("ranks") or []
    if ranks:
        ckpt.set_rng_state(ranks[dist.rank] if dist.rank < len(ranks) else ranks[0])
    return state


def grad_norm(parameters: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Clip to `max_norm` (0: no clipping) and return the global norm before clipping, as a plain tensor."""
    norm = torch.nn.utils.clip_grad_norm_(parameters, max_norm if max_norm > 0 else float("inf"), foreach=True)
    if hasattr(norm, "full_tensor"):  # a DTensor under FSDP2
        norm = norm.full_tensor()
    return norm
