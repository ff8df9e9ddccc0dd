"""Training memory per rank for a mesh layout, from the configs alone (what `slm model info --mesh` prints).

    parts = memory_per_rank(config, MeshShape(dp=8, tp=2), batch_size=16, seq_len=2048)
    parts["total"]       # bytes on the busiest rank: weights + gradients + optimizer + activations + logits

The layout follows this package's parallelisms (train/tensor_parallel.py, train/pipeline_parallel.py, model_parallel.py):
- tp shards the blocks' matrices, the embedding and the head by tp; norms (and learned positions) are
  replicated; the logits are gathered whole on every tp rank (the loss is the single-process code).
- pp gives each rank its stages' layers (stage_layers), the embedding to the first stage, the final norm and head
  to the last; the busiest rank is reported.
- dp shards weights, gradients and AdamW moments by dp with FSDP2 (always in a mesh with tp or pp, or with
  train.parallel=fsdp), plus one block gathered whole at a time and the root group (embedding, final norm,
  head) gathered whole with its gradients, for the forward and backward; DDP (dp only) keeps full replicas.
- fp32 master weights (4 B), fp32 gradients (4 B), AdamW moments (8 B) per parameter held.
- activations: model.counting's per-layer estimate for one micro-batch of `batch_size` rows, divided by tp with
  sequence parallelism (without it the norms' and residuals' share, 10 of its 34·d bytes per token, repeats on
  every tp rank), times the micro-batches a pipeline stage holds at once (`in_flight`).
- logits on the last stage: three fp32 copies of one micro-batch's (log-softmax, its gradient, the logits'
  gradient); with gpipe two per micro-batch held (logits and log-softmax) until the backward pass, plus the three
  of the one being differentiated; with 1f1b about one per micro-batch (measured) beside the three; under tp also
  the head's [rows, positions, vocab/tp] shard the whole logits are gathered from.
- not counted: the process group's and pipeline's buffers, the allocator's slack, and the transient copy of a
  gradient being accumulated (on CPU these came to ~8-12 MiB a rank in the tests).
"""

from __future__ import annotations

from slmkit.model.config import ModelConfig
from slmkit.model.counting import count_parameters, training_memory_estimate
from slmkit.train.mesh import MeshShape
from slmkit.train.pipeline_parallel import stage_layers


def layer_split(config: ModelConfig) -> tuple[int, int]:
    """(parameters of one block that tp shards, parameters it replicates)."""
    c = config
    per_layer = count_parameters(c)["per_layer"]
    replicated = 2 * c.d_model * (2 if c.norm == "layernorm" else 1)  # the block's two norms
    replicated += 2 * c.head_dim * c.qk_norm + c.d_model * c.attn_out_bias + c.d_model * c.mlp_bias  # row-wise biases
    return per_layer - replicated, replicated


def parameters_per_pp_rank(config: ModelConfig, shape: MeshShape, stages_per_rank: int = 1) -> list[int]:
    """Parameters each pipeline rank holds (before dp sharding), tp shards counted as theirs."""
    c = config
    sharded, replicated = layer_split(c)
    layer = sharded // shape.tp + replicated
    vocab_rows = c.vocab_size * c.d_model // shape.tp
    positions = c.max_seq_len * c.d_model if c.positions == "learned" else 0
    final_norm = c.d_model * (2 if c.norm == "layernorm" else 1)
    n_stages = shape.pp * stages_per_rank
    layers = stage_layers(c.n_layers, n_stages)
    out = []
    for rank in range(shape.pp):
        stages = [rank + k * shape.pp for k in range(stages_per_rank)]
        held = sum(len(layers[s]) for s in stages) * layer
        if 0 in stages:
            held += vocab_rows + positions
        if n_stages - 1 in stages:
            held += final_norm + (0 if c.tie_embeddings and 0 in stages else vocab_rows)
        out.append(held)
    return out


def root_parameters(config: ModelConfig, shape: MeshShape, stages: list[int], n_stages: int) -> int:
    """Parameters outside the blocks on a rank holding `stages` (tp shards counted as theirs)."""
    c = config
    vocab_rows = c.vocab_size * c.d_model // shape.tp
    held = (vocab_rows + (c.max_seq_len * c.d_model if c.positions == "learned" else 0)) if 0 in stages else 0
    if n_stages - 1 in stages:
        held += c.d_model * (2 if c.norm == "layernorm" else 1) + (0 if c.tie_embeddings and 0 in stages else vocab_rows)
    return held


def in_flight(pp_rank: int, pp: int, n_micro: int, schedule: str) -> int:
    """Micro-batches whose activations a pipeline rank holds at once: all with gpipe; with 1f1b (and, per
    virtual stage, interleaved) rank r runs pp - r forwards before its first backward."""
    return n_micro if schedule == "gpipe" else min(pp - pp_rank, n_micro)


def memory_per_rank(config: ModelConfig, shape: MeshShape, batch_size: int, seq_len: int, *, grad_accum: int = 1,
                    pp_schedule: str = "1f1b", fsdp: bool = False, sequence_parallel: bool = True,
                    activation_bytes: int = 2, gradient_checkpointing: bool = False,
                    loss_chunk_size: int | None = None) -> dict[str, int]:
    """Bytes on the busiest rank by part (parameters: the count it holds); see the module docstring."""
    c = config
    v = 2 if pp_schedule == "interleaved" else 1
    shard_dp = shape.dp if (fsdp or shape.model_parallel) else 1
    single = training_memory_estimate(c, batch_size, seq_len, activation_bytes, gradient_checkpointing,
                                      loss_chunk_size)
    per_layer = single["activations"] / c.n_layers
    # one micro-batch's fp32 logits [rows, positions, vocab] (all positions, or one chunk): the loss keeps their
    # log-softmax, and its backward holds that, its incoming gradient and the logits' gradient at once
    logits = single["logits"] // 2
    n_micro = grad_accum if shape.pp > 1 else 1
    # under pp, measured on CPU: the last stage also keeps about one logits copy per micro-batch until the step ends
    # (torch's schedule holds each micro-batch's loss, and with it more than the scalar), so pp runs should chunk
    logits_held = logits * (3 if shape.pp == 1 else 2 * n_micro + 1 if pp_schedule == "gpipe" else n_micro + 3)
    if shape.tp > 1:  # the head's column shard, and its gradient in backward, beside the gathered logits
        logits_held += logits // shape.tp
    tp_share = 1 / shape.tp if sequence_parallel or shape.tp == 1 else 10 / 34 + 24 / 34 / shape.tp
    per_layer *= tp_share
    layers = stage_layers(c.n_layers, shape.pp * v)
    sharded, replicated = layer_split(c)
    gathered_block = (sharded // shape.tp + replicated) * 4 if shard_dp > 1 else 0  # FSDP: one block unsharded
    best: dict[str, int] = {}
    for rank, held in enumerate(parameters_per_pp_rank(c, shape, v)):
        stages = [rank + k * shape.pp for k in range(v)]
        last = shape.pp * v - 1 in stages
        local = -(-held // shard_dp)
        # FSDP's root group (embedding, final norm, head) is gathered whole for the forward and backward, and its
        # gradients exist whole until they are reduce-scattered
        root = root_parameters(c, shape, stages, shape.pp * v) if shard_dp > 1 else 0
        parts = {
            "parameters": local,
            "weights": 4 * local + gathered_block + 4 * root,
            "gradients": 4 * local + 4 * root,
            "optimizer": 8 * local,
            "activations": int(sum(len(layers[s]) for s in stages) * per_layer * in_flight(rank, shape.pp, n_micro,
                                                                                         pp_schedule)),
            "logits": logits_held if last else 0,
        }
        parts["total"] = sum(value for key, value in parts.items() if key != "parameters")
        if parts["total"] > best.get("total", -1):
            best = parts
    return best
