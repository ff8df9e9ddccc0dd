"""`train.mesh`: how the processes of a torchrun job split the work, as a DeviceMesh of named dimensions.

    train.mesh="dp=2,tp=2"     # 4 processes: 2 data-parallel replicas (FSDP2), each tensor-parallel over 2
    train.mesh="pp=2,dp=2"     # 4 processes: 2 pipeline stages, each stage's layers data-parallel over 2
    train.parallel=tp          # shorthand for train.mesh="tp=WORLD_SIZE" (pp likewise)

Dimensions are dp (data parallel), pp (pipeline stages) and tp (tensor parallel). The mesh is always laid out
in the order pp, dp, tp (whatever order the setting names them in), so the tp ranks of one group are
neighbouring processes (the same node when there are several) and its all-reduces stay on the fastest links,
as in torchtitan and Megatron. The data loader shards by the data-parallel rank alone: the tp and pp ranks of
one dp group train on the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch.distributed.device_mesh import init_device_mesh

from slmkit.errors import ConfigError

DIMS = ("pp", "dp", "tp")  # outermost first


@dataclass(frozen=True)
class MeshShape:
    """Degrees of each dimension (1 for an unused one)."""

    pp: int = 1
    dp: int = 1
    tp: int = 1

    @property
    def world_size(self) -> int:
        return self.pp * self.dp * self.tp

    @property
    def model_parallel(self) -> bool:
        """True when the model itself is split (tp or pp), not only the batch."""
        return self.tp > 1 or self.pp > 1

    def describe(self) -> str:
        return ",".join(f"{d}={getattr(self, d)}" for d in DIMS if getattr(self, d) > 1) or "dp=1"


def parse_mesh(text: str) -> MeshShape:
    """"dp=2,tp=2" -> MeshShape(dp=2, tp=2); ConfigError naming what is wrong."""
    degrees: dict[str, int] = {}
    for part in str(text).replace(" ", "").split(","):
        if not part:
            continue
        name, sep, value = part.partition("=")
        if not sep or name not in DIMS:
            raise ConfigError(f"train.mesh: '{part}' is not DIM=DEGREE with DIM one of {', '.join(DIMS)} "
                              "(e.g. train.mesh=\"dp=2,tp=2\")")
        if name in degrees:
            raise ConfigError(f"train.mesh names {name} twice")
        if not value.isdigit() or int(value) < 1:
            raise ConfigError(f"train.mesh: {name}={value} must be a positive whole number")
        degrees[name] = int(value)
    if not degrees:
        raise ConfigError("train.mesh is empty: give degrees like \"dp=2,tp=2\"")
    return MeshShape(**degrees)


def mesh_shape(train_cfg, world_size: int) -> MeshShape:
    """The layout of a run of `world_size` processes: train.mesh, else train.parallel=tp|pp over every
    process, else every process data-parallel. ConfigError when the degrees do not multiply to the world."""
    if train_cfg.mesh:
        shape = parse_mesh(train_cfg.mesh)
        if shape.world_size != world_size:
            raise ConfigError(f"train.mesh={train_cfg.mesh} needs {shape.world_size} processes, but torchrun "
                              f"started {world_size} (WORLD_SIZE): make the degrees multiply to {world_size}")
        return shape
    if train_cfg.parallel == "tp":
        return MeshShape(tp=world_size)
    if train_cfg.parallel == "pp":
        return MeshShape(pp=world_size)
    return MeshShape(dp=world_size)


def check_model_fits(shape: MeshShape, model_config, train_cfg) -> None:
    """ConfigError when the model cannot be split as `shape` asks."""
    c = model_config
    if shape.tp > 1:
        for name in ("n_heads", "n_kv_heads"):
            if getattr(c, name) % shape.tp:
                raise ConfigError(f"tensor parallelism splits attention heads evenly: model.{name} "
                                  f"({getattr(c, name)}) is not divisible by tp={shape.tp}")
        for name in ("d_ff", "vocab_size"):
            if getattr(c, name) % shape.tp:
                raise ConfigError(f"tensor parallelism splits model.{name} ({getattr(c, name)}) evenly: it is not "
                                  f"divisible by tp={shape.tp} (pad it up to a multiple, as GPT-2's 50257 -> 50304)")
        if train_cfg.sequence_parallel and c.positions != "rope":
            raise ConfigError(f"sequence parallelism needs rotary positions (model.positions={c.positions} adds a "
                              "table to the whole sequence): set train.sequence_parallel=false")
        if train_cfg.sequence_parallel and train_cfg.seq_len % shape.tp:
            raise ConfigError(f"sequence parallelism splits train.seq_len ({train_cfg.seq_len}) over tp={shape.tp}: "
                              "make it divisible, or set train.sequence_parallel=false")
    if shape.model_parallel and c.is_moe:
        raise ConfigError("tensor and pipeline parallelism are for dense models: a mixture-of-experts model "
                          "trains with dp (train.parallel=ddp or fsdp)")
    if shape.pp > 1:
        stages = shape.pp * pipeline_stages_per_rank(train_cfg)
        if c.n_layers < stages:
            raise ConfigError(f"pipeline parallelism needs a layer per stage: model.n_layers ({c.n_layers}) is "
                              f"less than the {stages} stages of pp={shape.pp} with train.pp_schedule="
                              f"{train_cfg.pp_schedule}")
        rounds = max(1, train_cfg.grad_accum // shape.pp)  # torch's interleaved 1F1B runs the micro-batches in rounds
        if train_cfg.pp_schedule == "interleaved" and train_cfg.grad_accum % rounds:
            raise ConfigError(f"train.pp_schedule=interleaved runs train.grad_accum ({train_cfg.grad_accum}) "
                              f"micro-batches in {rounds} rounds of pp={shape.pp}: make it divisible by {rounds} "
                              "(a multiple of pp always is)")
        if train_cfg.grad_accum < shape.pp and train_cfg.pp_schedule != "gpipe":
            raise ConfigError(f"train.pp_schedule={train_cfg.pp_schedule} needs at least as many micro-batches "
                              f"(train.grad_accum={train_cfg.grad_accum}) as stages (pp={shape.pp}); raise "
                              "train.grad_accum or use train.pp_schedule=gpipe")


def pipeline_stages_per_rank(train_cfg) -> int:
    """Stages each pipeline rank holds: 2 for the interleaved schedule (virtual stages), else 1."""
    return 2 if train_cfg.pp_schedule == "interleaved" else 1


def build_device_mesh(shape: MeshShape, device_type: str):
    """The torch DeviceMesh over every process, dimensions pp, dp, tp (size 1 ones included, so every
    name can be asked for)."""
    return init_device_mesh(device_type, (shape.pp, shape.dp, shape.tp), mesh_dim_names=DIMS)
