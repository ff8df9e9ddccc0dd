"""Tensor parallelism of the decoder over a `tp` mesh dimension, with torch's DTensor plans (Megatron's layout).

    apply_tensor_parallel(decoder, tp_mesh, sequence_parallel=True)   # in place, before FSDP / the optimizer

Per block: q/k/v column-wise (each rank computes n_heads/tp query heads and n_kv_heads/tp KV heads, so a GQA
group never straddles two ranks) and the output projection row-wise; SwiGLU gate/up (or the GELU/ReLU² up)
column-wise and down row-wise. One all-reduce (or reduce-scatter) per attention and per MLP forward.
The token embedding is split by vocabulary rows (row-wise: each rank looks up the ids it owns, the partial
results are summed) and the head by vocabulary columns; its logits are gathered whole, so the loss code is
the single-process code. A tied head shares the embedding's [vocab/tp, d_model] shard (both are Shard(0)).

Sequence parallelism (Korthikanti et al. 2022), the default: between the matmuls the residual stream is
split along the sequence, so the norms, residual adds and dropout run on seq/tp positions per rank, and the
all-reduces become reduce-scatter + all-gather pairs of the same volume. Works on CPU with gloo (torch 2.13).
With train.sequence_parallel=false the residual stream is replicated and the norms repeat on every rank.

QK-norm weights act on the local heads only, so each rank would see only part of their gradient: they are
made replicated DTensors over sharded heads (SequenceParallel on the head dimension), whose gradient DTensor
sums the parts. Without sequence parallelism the norms (and a learned position table) stay plain tensors:
they act on replicated activations, so their gradients are whole and equal on every rank. Sequence
parallelism needs rotary positions (learned or sinusoidal ones are added to the whole sequence before the
stream is split; mesh.check_model_fits says so).
"""

from __future__ import annotations

from torch import nn
from torch.distributed.tensor import Replicate, Shard
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    PrepareModuleInput,
    PrepareModuleOutput,
    RowwiseParallel,
    SequenceParallel,
    parallelize_module,
)

# The block's attention takes (x, rope, attention_mask, cache, step); only x is a tensor to lay out.
ATTENTION_ARGS = 5


def apply_tensor_parallel(model: nn.Module, tp_mesh, sequence_parallel: bool = True) -> nn.Module:
    """Shard `model` over `tp_mesh` in place (see the module docstring); returns it. `model` is a Decoder or a
    pipeline stage of one (train/pipeline_parallel.py's DecoderStage: the embedding, head and final norm only where it
    holds them, its blocks in a ModuleDict)."""
    tp = tp_mesh.size()
    stream = Shard(1) if sequence_parallel else Replicate()  # how the residual stream is laid out
    top = {
        "embed": RowwiseParallel(input_layouts=Replicate(), output_layouts=stream),
        # the final norm's output is gathered whole: the head (and a chunked loss) then see [batch, seq, d]
        "final_norm": (SequenceParallel(use_local_output=False) if sequence_parallel
                       else PrepareModuleOutput(output_layouts=Replicate(), desired_output_layouts=Replicate())),
        "head": ColwiseParallel(input_layouts=stream, output_layouts=Replicate(), use_local_output=True),
    }
    top = {name: style for name, style in top.items() if getattr(model, name, None) is not None}
    tied = model.config.tie_embeddings and "embed" in top and "head" in top
    parallelize_module(model, tp_mesh, top)
    if tied:  # both are Shard(0) over the vocabulary: one parameter again
        model.head.weight = model.embed.weight
    blocks = model.blocks.values() if isinstance(model.blocks, nn.ModuleDict) else model.blocks
    for block in blocks:
        parallelize_module(block, tp_mesh, _block_plan(block, stream, sequence_parallel))
        block.attn.n_heads //= tp  # the attention's reshapes see the local heads
        block.attn.n_kv_heads //= tp
    return model


def _block_plan(block: nn.Module, stream, sequence_parallel: bool) -> dict:
    plan = {
        "attn": PrepareModuleInput(input_layouts=(stream,) + (None,) * (ATTENTION_ARGS - 1),
                                   desired_input_layouts=(Replicate(),) + (None,) * (ATTENTION_ARGS - 1)),
        "attn.q_proj": ColwiseParallel(),
        "attn.k_proj": ColwiseParallel(),
        "attn.v_proj": ColwiseParallel(),
        "attn.out_proj": RowwiseParallel(output_layouts=stream),
        "mlp": PrepareModuleInput(input_layouts=(stream,), desired_input_layouts=(Replicate(),)),
        "mlp.up_proj": ColwiseParallel(),
        "mlp.down_proj": RowwiseParallel(output_layouts=stream),
    }
    if hasattr(block.mlp, "gate_proj"):
        plan["mlp.gate_proj"] = ColwiseParallel()
    if block.attn.q_norm is not None:  # [batch, seq, heads, head_dim] with the heads sharded
        plan["attn.q_norm"] = SequenceParallel(sequence_dim=2, use_local_output=True)
        plan["attn.k_norm"] = SequenceParallel(sequence_dim=2, use_local_output=True)
    if sequence_parallel:
        plan["attn_norm"] = SequenceParallel()
        plan["mlp_norm"] = SequenceParallel()
    return plan
