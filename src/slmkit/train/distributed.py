"""Process group, device choice, the run's mesh layout, and model wrapping (DDP or FSDP2) for runs under torchrun.

The same `slm train` command runs alone or under torchrun; torchrun sets RANK, LOCAL_RANK and
WORLD_SIZE, and we join its process group (nccl on CUDA, gloo on CPU). Multi-node runs use
torchrun's rendezvous, e.g. on each of two nodes:

    torchrun --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 \
        --rdzv_id=run1 -m slmkit train configs/gpt2-124m.yaml

Only rank 0 logs and writes files (`Dist.is_main`); every rank reads checkpoints (and under a tp/pp mesh
writes its shards of them), so the run directory must be on a filesystem all nodes see. `Dist` also carries
the layout (train/mesh.py: degrees of pp, dp, tp, and the DeviceMesh when the model is split, which
model_parallel.py lays the model out on instead of `wrap_model`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as torch_dist
from torch import nn

from slmkit.errors import ConfigError
from slmkit.train.mesh import MeshShape, build_device_mesh, mesh_shape
from slmkit.train.precision import resolve_precision


@dataclass
class Dist:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    initialized_here: bool = False
    shape: MeshShape = field(default_factory=MeshShape)  # degrees of pp, dp, tp (train/mesh.py)
    mesh: object = None  # the DeviceMesh when the model is split (tp or pp > 1), else None

    def __post_init__(self) -> None:
        if self.shape == MeshShape() and self.world_size > 1:  # no layout given: every process data-parallel
            self.shape = MeshShape(dp=self.world_size)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # this rank's coordinates in the (pp, dp, tp) mesh, laid out row-major as init_device_mesh does
    @property
    def tp_rank(self) -> int:
        return self.rank % self.shape.tp

    @property
    def dp_rank(self) -> int:
        """The rank the data is sharded by: the tp and pp ranks of one data-parallel group share it."""
        return (self.rank // self.shape.tp) % self.shape.dp

    @property
    def dp_size(self) -> int:
        return self.shape.dp

    @property
    def pp_rank(self) -> int:
        return self.rank // (self.shape.tp * self.shape.dp)

    @property
    def reports_loss(self) -> bool:
        """True on the ranks whose loss counts once in a sum over all ranks: tp rank 0 of the last pipeline
        stage (the tp ranks compute the same loss; earlier stages compute none)."""
        return self.tp_rank == 0 and self.pp_rank == self.shape.pp - 1

    def all_reduce_sum(self, values: list[float], device: torch.device) -> list[float]:
        """Sum plain numbers over ranks (float64, so token counts stay exact)."""
        if not self.enabled:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=device)
        torch_dist.all_reduce(t, op=torch_dist.ReduceOp.SUM)
        return t.tolist()

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank when `flag` is true on any rank (for stop signals)."""
        if not self.enabled:
            return flag
        return self.all_reduce_sum([1.0 if flag else 0.0], device)[0] > 0

    def barrier(self) -> None:
        if self.enabled:
            torch_dist.barrier()

    def close(self) -> None:
        if self.initialized_here and torch_dist.is_initialized():
            torch_dist.destroy_process_group()


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device={name} but CUDA is not available here; use train.device=cpu or auto")
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
    return device


def launched_rank() -> int:
    """This process's global rank as torchrun set it (0 when run alone)."""
    return int(os.environ.get("RANK", "0"))


def setup_distributed(train_cfg) -> tuple[Dist, torch.device]:
    """Join torchrun's process group when WORLD_SIZE > 1; pick this process's device (and resolve
    train.precision=auto for it)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = launched_rank()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(train_cfg.device, local_rank)
    train_cfg.precision = resolve_precision(train_cfg.precision, device)  # `auto` -> what this device runs fast
    dist = Dist(rank, local_rank, world, shape=mesh_shape(train_cfg, world))
    if world > 1:
        backend = train_cfg.backend
        if backend == "auto":
            backend = "nccl" if device.type == "cuda" else "gloo"
        if backend == "nccl" and device.type != "cuda":
            raise ConfigError("train.backend=nccl needs CUDA devices; use train.backend=gloo on CPU")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        if not torch_dist.is_initialized():
            torch_dist.init_process_group(backend=backend, timeout=dt.timedelta(minutes=30),
                                          device_id=device if device.type == "cuda" else None)
            dist.initialized_here = True
        if dist.shape.model_parallel:
            dist.mesh = build_device_mesh(dist.shape, device.type)
    return dist, device


@contextlib.contextmanager
def training_session(train_cfg, log=print, fsdp_refusal: str | None = None):
    """(dist, device, log) for one run: torchrun's group joined (and left at the end), `log` on rank 0 only,
    and train.parallel=fsdp refused with `fsdp_refusal` when the objective does not support it yet."""
    dist, device = setup_distributed(train_cfg)
    try:
        if fsdp_refusal and dist.enabled and train_cfg.parallel == "fsdp":
            raise ConfigError(fsdp_refusal)
        if dist.shape.model_parallel:
            raise ConfigError(f"train.mesh={dist.shape.describe()}: tensor and pipeline parallelism are for "
                              "`slm train` so far; fine-tuning and alignment train with train.parallel=ddp or fsdp")
        yield dist, device, (log if dist.is_main else (lambda *a, **k: None))
    finally:
        dist.close()


def wrap_model(model: nn.Module, train_cfg, dist: Dist, device: torch.device) -> nn.Module:
    """DDP or FSDP2 (`fully_shard` per block, then the root) when distributed; the model itself otherwise."""
    if not dist.enabled:
        return model
    if dist.shape.model_parallel:
        raise ConfigError(f"train.mesh={dist.shape.describe()} splits the model: use model_parallel.parallelize")
    if train_cfg.parallel == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    if train_cfg.precision == "fp16":
        raise ConfigError("train.precision=fp16 is not supported with FSDP; use bf16 (no loss scaling needed)")
    param_dtype = torch.bfloat16 if train_cfg.precision == "bf16" else None
    policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)
    for block in model.blocks:
        fully_shard(block, mp_policy=policy)
    fully_shard(model, mp_policy=policy)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP and torch.compile wrappers (FSDP2 shards in place, nothing to unwrap)."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def no_grad_sync(model: nn.Module, skip: bool):
    """Under DDP, skip the gradient all-reduce on all but the last micro-batch of an accumulation."""
    if skip:
        inner = model._orig_mod if hasattr(model, "_orig_mod") else model
        if isinstance(inner, nn.parallel.DistributedDataParallel):
            return inner.no_sync()
    return contextlib.nullcontext()


def is_fsdp(model: nn.Module) -> bool:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # pragma: no cover - old torch
        return False
    return isinstance(unwrap(model), FSDPModule)
