"""Moving training state between a live (possibly DDP/FSDP-wrapped) model and checkpoint files.

The collective parts live here: under FSDP every rank must join in gathering full tensors
(`get_model_state_dict` with `full_state_dict=True`), and every rank's RNG state is gathered to
rank 0 so that a resumed multi-process run continues each rank's random stream.
"""

from __future__ import annotations

from pathlib import Path

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
from slmkit.fileio import temporary_sibling
from slmkit.train.distributed import unwrap
from slmkit.train.sharded_checkpoint import is_sharded, load_sharded, save_sharded
from slmkit.train.weights import FullWeights

FULL_ON_CPU = StateDictOptions(full_state_dict=True, cpu_offload=True)
TIED_EMBEDDING, TIED_HEAD = "embed.weight", "head.weight"  # one matrix when tied; two copies under pp
FULL = StateDictOptions(full_state_dict=True)


def torch_optimizers(optimizer):
    """What torch's state-dict helpers take: the optimizer, or the list a CombinedOptimizer (optim.py) holds."""
    return getattr(optimizer, "optimizers", optimizer)


def gather_state(model, optimizer, dist, sharded: Path | None = None) -> tuple[dict | None, dict | None, list]:
    """(model state, optimizer state keyed by parameter name, [rng state per rank]); collective. Full tensors,
    on rank 0 (the other ranks' dicts may be empty); under pipeline parallelism the stages' parts merged.
    With `sharded` (a directory all ranks see), every rank writes its shards there instead (DCP) and the two
    states are None."""
    module = unwrap(model)
    if sharded is not None:
        save_sharded(sharded, module, torch_optimizers(optimizer))
        model_state = optimizer_state = None
    elif dist.shape.pp > 1:
        model_state, optimizer_state = _gather_pipeline_parts(module, optimizer, dist)
    else:
        model_state = get_model_state_dict(module, options=FULL_ON_CPU)
        optimizer_state = get_optimizer_state_dict(module, torch_optimizers(optimizer), options=FULL_ON_CPU)
    rng = ckpt.rng_state()
    if dist.enabled:
        ranks = [None] * dist.world_size
        torch_dist.all_gather_object(ranks, rng)
    else:
        ranks = [rng]
    return model_state, optimizer_state, ranks


def shared_temporary(final: Path, dist) -> Path:
    """A temporary directory beside `final`, made by rank 0 and named to every rank (collective)."""
    name = [str(temporary_sibling(final)) if dist.is_main else None]
    if dist.enabled:
        torch_dist.broadcast_object_list(name, src=0)
    return Path(name[0])


def full_model_state(model, dist) -> dict:
    """The whole model's full tensors on rank 0 (collective; other ranks get {})."""
    if dist.shape.pp > 1:
        return _gather_pipeline_parts(unwrap(model), None, dist)[0]
    return get_model_state_dict(unwrap(model), options=FULL_ON_CPU)


def _gather_pipeline_parts(part, optimizer, dist) -> tuple[dict, dict]:
    """Each pipeline rank's part gathered whole over its own dp/tp sub-mesh, then the parts (sent by dp and tp
    rank 0 of each stage) merged on rank 0 into one model's state and one optimizer's (groups joined by their
    settings, in the order optim.parameter_groups makes: decayed first)."""
    model_state = {k: v.cpu() for k, v in get_model_state_dict(part, options=FULL).items()}
    optim_state = (get_optimizer_state_dict(part, torch_optimizers(optimizer), options=FULL)
                   if optimizer is not None else {"state": {}, "param_groups": []})
    optim_state = {"state": {k: {n: (t.cpu() if torch.is_tensor(t) else t) for n, t in v.items()}
                             for k, v in optim_state["state"].items()},
                   "param_groups": optim_state["param_groups"]}
    sender = dist.dp_rank == 0 and dist.tp_rank == 0
    parts = [None] * dist.world_size if dist.is_main else None
    torch_dist.gather_object((model_state, optim_state) if sender else None, parts, dst=0)
    if not dist.is_main:
        return {}, {}
    merged_model, merged_state, groups = {}, {}, {}
    for got in parts:
        if got is None:
            continue
        merged_model.update(got[0])
        merged_state.update(got[1]["state"])
        for group in got[1]["param_groups"]:
            key = (group["weight_decay"], group.get("lr_scale"))
            joined = groups.setdefault(key, {**group, "params": []})
            joined["params"] = joined["params"] + list(group["params"])
    ordered = sorted(groups.values(), key=lambda g: -g["weight_decay"])
    if part.config.tie_embeddings:  # the last stage's head copy equals the embedding: keep one, as one process does
        merged_model.pop(TIED_HEAD, None)
        merged_state.pop(TIED_HEAD, None)
        ordered = [{**g, "params": [p for p in g["params"] if p != TIED_HEAD]} for g in ordered]
    return merged_model, {"state": merged_state, "param_groups": ordered}


def _part_of_optimizer_state(state: dict, names: set[str]) -> dict:
    """The entries of a full optimizer state (keyed by parameter name) for the parameters in `names` (a tied
    head's copy on the last pipeline stage takes the embedding's)."""
    if TIED_HEAD in names and TIED_EMBEDDING not in names and TIED_EMBEDDING in state["state"]:
        state = {"state": {**state["state"], TIED_HEAD: state["state"][TIED_EMBEDDING]},
                 "param_groups": [{**g, "params": [TIED_HEAD if p == TIED_EMBEDDING else p for p in g["params"]]}
                                  for g in state["param_groups"]]}
    groups = [{**g, "params": [p for p in g["params"] if p in names]} for g in state["param_groups"]]
    return {"state": {k: v for k, v in state["state"].items() if k in names},
            "param_groups": [g for g in groups if g["params"]]}


def restore_state(directory, model, optimizer, scaler, model_config, dist, weights=None) -> dict:
    """Load a checkpoint into the live model and optimizer on every rank; returns its trainer state.
    `weights` (default FullWeights) reads the checkpoint's tensors; a non-strict one restores part of the model."""
    weights = weights or FullWeights()
    state = ckpt.verify_checkpoint(directory, checksums=dist.is_main)
    module = unwrap(model)
    part_only = dist.shape.pp > 1  # this rank holds some layers: the others' tensors are not for it
    names = set(get_model_state_dict(module).keys()) if part_only else None
    if is_sharded(directory):
        # a tied head's copy on the last pipeline stage reads the embedding's optimizer state
        tied_copy = (getattr(module, "config", None) is not None and module.config.tie_embeddings and part_only
                     and TIED_HEAD in names and TIED_EMBEDDING not in names)
        try:
            load_sharded(directory, module, torch_optimizers(optimizer),
                         {TIED_HEAD: TIED_EMBEDDING} if tied_copy else None)
        except (RuntimeError, KeyError, ValueError) as e:
            raise CheckpointError(f"{directory}: the distributed checkpoint does not fit this model "
                                  f"({str(e).splitlines()[0]}); was it trained with a different model config?") from None
        _restore_rng(rng_of(directory), dist)
        return state
    model_state = weights.read(directory, model_config)
    if part_only:
        model_state = {k: v for k, v in model_state.items() if k in names}
    try:
        set_model_state_dict(module, model_state, options=StateDictOptions(full_state_dict=True, strict=weights.strict))
    except (RuntimeError, KeyError, ValueError) as e:
        raise CheckpointError(f"{directory}: the weights do not fit this model ({str(e).splitlines()[0]}); "
                              "was it trained with a different model config?") from None
    files, rng = ckpt.load_training_files(directory)
    if part_only:
        files["optimizer"] = _part_of_optimizer_state(files["optimizer"], names)
    try:
        set_optimizer_state_dict(module, torch_optimizers(optimizer), files["optimizer"], options=FULL)
    except (RuntimeError, KeyError, ValueError) as e:
        raise CheckpointError(f"{directory}: the optimizer state does not fit ({str(e).splitlines()[0]})") from None
    if scaler is not None and files.get("scaler"):
        scaler.load_state_dict(files["scaler"])
    _restore_rng(rng, dist)
    return state


def rng_of(directory: Path) -> dict:
    path = Path(directory) / ckpt.RNG_FILE
    return torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else {"ranks": []}


def _restore_rng(rng: dict, dist) -> None:
    """This rank's RNG state as saved (rank 0's when the run had fewer ranks)."""
    ranks = rng.get("ranks") or []
    if ranks:
        ckpt.set_rng_state(ranks[dist.rank] if dist.rank < len(ranks) else ranks[0])


def grad_norm(parameters: list[torch.Tensor], max_norm: float, pp_group=None, copies=()) -> torch.Tensor:
    """Clip to `max_norm` (0: no clipping) and return the global norm before clipping, as a plain tensor.

    DTensor gradients (FSDP2, tensor parallelism) give their norm over their whole mesh; plain ones (replicated
    under tensor parallelism, or every parameter without a mesh) are whole on each rank. Under pipeline
    parallelism each stage holds different parameters, so the squared norms are summed over `pp_group` first:
    every stage clips by the same global norm, as one process would. `copies` are clipped but not counted (a tied
    head's copy of the embedding, counted on the first stage)."""
    groups: dict = {}  # the gradients' mesh (None: plain tensors) -> parameters
    uncounted = {id(p) for p in copies}
    for p in parameters:
        if p.grad is not None:
            groups.setdefault(getattr(p.grad, "device_mesh", None), []).append(p)
    norms = []
    for mesh, params in groups.items():
        counted = [p.grad for p in params if id(p) not in uncounted]
        if not counted:
            continue
        norm = torch.nn.utils.get_total_norm(counted, foreach=True)
        norms.append(norm.full_tensor() if mesh is not None else norm)
    if not norms and pp_group is None:
        return torch.zeros(())
    norms = norms or [torch.zeros(())]
    if len(norms) == 1 and pp_group is None:
        total = norms[0]
    else:
        squared = torch.stack([n.float() ** 2 for n in norms]).sum()
        if pp_group is not None:
            torch_dist.all_reduce(squared, group=pp_group)
        total = squared.sqrt()
    if max_norm > 0:
        for params in groups.values():
            torch.nn.utils.clip_grads_with_norm_(params, max_norm, total, foreach=True)
    return total
