"""A decoder laid out over a 2-D or 3-D mesh (pp x dp x tp): pipeline stages, then tensor parallelism inside
each stage, then FSDP2 over the data-parallel dimension — torchtitan's order.

    local = parallelize(decoder, train_cfg, dist, device)
    local.module      # what this rank trains: the decoder (TP/FSDP in place) or its pipeline part
    local.pipeline    # the pipeline schedule runner (train/pipeline_parallel.py) under pp, else None

The dp dimension of a mesh that also has tp or pp shards with FSDP2 (`fully_shard` on the dp sub-mesh): its
parameters are DTensors already, which DDP does not take. A dp-only run keeps train.parallel=ddp|fsdp
(distributed.wrap_model). Mixed precision is autocast over fp32 parameters here (FSDP2 keeps fp32 too), and
fp16 is refused (GradScaler does not unscale DTensor gradients across a mesh): use bf16.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn
from torch.distributed.fsdp import fully_shard

from slmkit.errors import ConfigError
from slmkit.model.decoder import Decoder
from slmkit.train.mesh import check_model_fits, pipeline_stages_per_rank
from slmkit.train.pipeline_parallel import Pipeline, split_decoder, sum_tied_gradients, tied_embedding_group
from slmkit.train.tensor_parallel import apply_tensor_parallel


@dataclass
class LocalModel:
    module: nn.Module  # this rank's parameters, under the full decoder's names
    pipeline: Pipeline | None = None
    tied_group: object = None  # pp with a tied head: the group summing the embedding and head copies' gradients

    def copies(self) -> list:
        """Parameters that repeat one counted on another rank (a tied head's copy on the last pipeline stage): the
        global gradient norm counts the matrix once."""
        part = self.module
        if self.tied_group is not None and part.last and not part.first:
            return [part.head.weight]
        return []

    def after_backward(self) -> None:
        """What the gradients need once every micro-batch is through: the tied copies summed (pp)."""
        if self.tied_group is not None:
            sum_tied_gradients(self.module, self.tied_group)


def check_trainable(model: nn.Module, loss_fn, dist) -> None:
    """ConfigError unless the Trainer may split `model` over dist.mesh: a plain decoder, every parameter trained,
    the language-model loss (objectives with their own batch sources deal rows over every process, not by dp)."""
    if any(not p.requires_grad for p in model.parameters()):
        raise ConfigError("tensor and pipeline parallelism train every parameter of a plain decoder; a model "
                          "with frozen parameters (LoRA, a frozen base) trains with train.parallel=ddp")
    if loss_fn is not None:
        raise ConfigError(f"train.mesh={dist.shape.describe()}: tensor and pipeline parallelism train the "
                          "language-model loss of `slm train`; objectives with their own loss (fine-tuning, "
                          "alignment) train with train.parallel=ddp or fsdp")


def parallelize(model: Decoder, train_cfg, dist, device) -> LocalModel:
    """Split `model` (already on `device`, the same initial weights on every rank) over dist.mesh."""
    shape = dist.shape
    check_model_fits(shape, model.config, train_cfg)
    if train_cfg.precision == "fp16":
        raise ConfigError("train.precision=fp16 is not supported with tp/pp meshes; use bf16 (no loss scaling needed)")
    if train_cfg.compile and shape.pp > 1:
        raise ConfigError("train.compile is not supported with pipeline parallelism yet; leave it off for pp")
    mesh = dist.mesh
    if shape.pp > 1:
        v = pipeline_stages_per_rank(train_cfg)
        part, stages = split_decoder(model, dist.pp_rank, shape.pp, v, hidden_out=bool(train_cfg.loss_chunk_size))
        forward_modules = [m for _, m in stages]
    else:
        part, stages, forward_modules = model, [], [model]
    if shape.tp > 1:
        for module in forward_modules:
            apply_tensor_parallel(module, mesh["tp"], train_cfg.sequence_parallel)
    if shape.dp > 1:
        dp_mesh = mesh["dp"]
        for block in part.blocks.values() if isinstance(part.blocks, nn.ModuleDict) else part.blocks:
            fully_shard(block, mesh=dp_mesh)
        for module in forward_modules:  # the embedding, norm and head of each stage
            fully_shard(module, mesh=dp_mesh, reshard_after_forward=shape.pp == 1)
    pipeline, tied_group = None, None
    if shape.pp > 1 and model.config.tie_embeddings:
        tied_group = tied_embedding_group(shape, dist.rank)
    if shape.pp > 1:
        n_stages = shape.pp * pipeline_stages_per_rank(train_cfg)
        pipeline = Pipeline(stages, n_stages, train_cfg.pp_schedule, train_cfg.grad_accum, mesh["pp"].get_group(),
                            device, train_cfg.loss_chunk_size)
    return LocalModel(part, pipeline, tied_group)
