"""`slm model list|info`: the named model shapes and what they cost (parameters, FLOPs, memory)."""

from __future__ import annotations

import argparse
from pathlib import Path

LIST_EXAMPLES = """examples:
  slm model list
"""

INFO_EXAMPLES = """examples:
  slm model info qwen3-283m
  slm model info stories15m --vocab-size 4096 --seq-len 256 --batch-size 32
  slm model info runs/demo                  # a checkpoint or Hugging Face model directory
  slm model info qwen3-283m --mesh "dp=8,tp=2" --batch-size 16 --seq-len 2048   # memory per rank
  slm model info qwen3-283m --mesh "pp=4,dp=2" --grad-accum 8 --pp-schedule 1f1b
"""


def register(subparsers) -> None:
    group = subparsers.add_parser("model", help="list model presets or describe one (sizes, FLOPs, memory)")
    group.set_defaults(group_parser=group)
    verbs = group.add_subparsers(dest="model_verb", metavar="VERB")

    listing = verbs.add_parser("list", help="list the model presets", epilog=LIST_EXAMPLES,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    listing.set_defaults(func=run_list)

    info = verbs.add_parser(
        "info", help="parameters, FLOPs/token, KV-cache and training memory of a preset or model directory",
        description="Describe a model preset (or the model in a checkpoint / Hugging Face directory) from its "
        "config alone: no weights are loaded.",
        epilog=INFO_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    info.add_argument("name", metavar="NAME_OR_DIR", help="a preset name (see 'slm model list') or a model directory")
    info.add_argument("--vocab-size", type=int, help="override the preset's vocabulary size (a trained tokenizer's)")
    info.add_argument("--seq-len", type=int, help="context length for FLOPs and memory (default: the model's)")
    info.add_argument("--batch-size", type=int, default=8, help="sequences per step for the memory estimate")
    info.add_argument("--checkpointing", action="store_true", help="estimate memory with activation checkpointing")
    info.add_argument("--loss-chunk-size", type=int, help="estimate memory with the loss computed in chunks")
    info.add_argument("--mesh", help='a train.mesh layout, e.g. "dp=8,tp=2": memory per rank of that layout '
                      "(--batch-size is then the micro-batch per data-parallel rank)")
    info.add_argument("--grad-accum", type=int, default=1, help="micro-batches per step (the pipeline's, with pp)")
    info.add_argument("--pp-schedule", choices=["gpipe", "1f1b", "interleaved"], default="1f1b")
    info.add_argument("--fsdp", action="store_true", help="a dp-only mesh shards with FSDP2 (with tp or pp it always does)")
    info.add_argument("--no-sequence-parallel", action="store_true", help="tp without sequence parallelism")
    info.add_argument("--precision", choices=["bf16", "fp32"], default="bf16", help="activation precision (weights stay fp32)")
    info.set_defaults(func=run_info)


def run_list(args) -> int:
    from slmkit.model.counting import count_parameters
    from slmkit.model.presets import PRESETS

    print(f"{'name':<13} {'params':>9} {'non-emb':>9}  description")
    for name, p in PRESETS.items():
        counts = count_parameters(p.build())
        print(f"{name:<13} {_millions(counts['total']):>9} {_millions(counts['non_embedding']):>9}  {p.description}")
    return 0


def run_info(args) -> int:
    from slmkit.model.counting import (count_parameters, flops_per_token, kv_cache_bytes_per_token,
                                       training_memory_estimate)

    config, source = _resolve(args)
    seq_len = args.seq_len or config.max_seq_len
    counts = count_parameters(config)
    c = config
    sharing = " (MQA)" if c.n_kv_heads == 1 else " (GQA)" if c.n_kv_heads < c.n_heads else ""
    kv = f"{c.n_kv_heads} KV head{'s' if c.n_kv_heads > 1 else ''}{sharing}"
    print(f"{source}")
    print(f"  shape        {c.n_layers} layers, d_model {c.d_model}, {c.n_heads} query heads / {kv}, "
          f"head_dim {c.head_dim}, d_ff {c.d_ff}")
    print(f"  layers       {c.norm} (eps {c.norm_eps:g}), {c.mlp}, positions {c.positions}"
          + (f" (theta {c.rope_theta:g}, scaling {c.rope_scaling})" if c.positions == "rope" else "")
          + (", qk-norm" if c.qk_norm else "") + (", tied head" if c.tie_embeddings else ", untied head"))
    if c.is_moe:
        print(f"  experts      {c.n_experts} routed (top {c.moe_top_k}, d_ff {c.moe_d_ff}) + {c.n_shared_experts} shared")
    print(f"  vocab        {c.vocab_size:,}; context {c.max_seq_len:,}")
    print(f"  parameters   {counts['total']:,} ({_millions(counts['total'])})")
    print(f"    embedding + head  {counts['embedding'] + counts['head']:,} ({_millions(counts['embedding'] + counts['head'])})")
    print(f"    non-embedding     {counts['non_embedding']:,} ({_millions(counts['non_embedding'])})")
    if c.is_moe:
        print(f"    active per token  {counts['active']:,} ({_millions(counts['active'])})")
    flops = flops_per_token(config, seq_len)
    print(f"  FLOPs/token  {flops:,} ({flops / 1e9:.2f} GFLOP) for training at seq_len {seq_len:,} "
          "(6N + 12·L·H·Q·T; inference ~1/3)")
    kv_bytes = kv_cache_bytes_per_token(config)
    print(f"  KV cache     {kv_bytes:,} bytes/token in bf16; {_size(kv_bytes * seq_len)} for one {seq_len:,}-token sequence")
    memory = training_memory_estimate(config, args.batch_size, seq_len, gradient_checkpointing=args.checkpointing,
                                      loss_chunk_size=args.loss_chunk_size)
    parts = ", ".join(f"{k} {_size(v)}" for k, v in memory.items() if k != "total")
    print(f"  training     ~{_size(memory['total'])} at batch {args.batch_size} x {seq_len:,} "
          f"(AdamW, fp32 weights, bf16 activations{', checkpointing' if args.checkpointing else ''}"
          f"{', chunked loss' if args.loss_chunk_size else ''}): {parts}")
    if args.mesh:
        _print_mesh_memory(config, args, seq_len)
    return 0


def _print_mesh_memory(config, args, seq_len: int) -> None:
    from slmkit.train.config import TrainConfig
    from slmkit.train.memory_estimate import memory_per_rank
    from slmkit.train.mesh import check_model_fits, parse_mesh

    shape = parse_mesh(args.mesh)
    check_model_fits(shape, config, TrainConfig(seq_len=seq_len, grad_accum=args.grad_accum,
                                                pp_schedule=args.pp_schedule,
                                                sequence_parallel=not args.no_sequence_parallel))
    parts = memory_per_rank(config, shape, args.batch_size, seq_len, grad_accum=args.grad_accum,
                            pp_schedule=args.pp_schedule, fsdp=args.fsdp,
                            sequence_parallel=not args.no_sequence_parallel,
                            activation_bytes=2 if args.precision == "bf16" else 4,
                            gradient_checkpointing=args.checkpointing, loss_chunk_size=args.loss_chunk_size)
    dp = "FSDP2" if (args.fsdp or shape.model_parallel) and shape.dp > 1 else "DDP" if shape.dp > 1 else "none"
    print(f"  per rank     mesh {shape.describe()} ({shape.world_size} processes; dp: {dp}"
          + (f", pp schedule {args.pp_schedule}, {args.grad_accum} micro-batches" if shape.pp > 1 else "")
          + f"), micro-batch {args.batch_size} x {seq_len:,}, {args.precision} activations; the busiest rank:")
    print(f"    parameters    {parts['parameters']:,} ({_millions(parts['parameters'])})")
    for key, label in (("weights", "weights (fp32)"), ("gradients", "gradients"), ("optimizer", "optimizer (AdamW)"),
                       ("activations", "activations"), ("logits", "logits + loss"), ("total", "total")):
        print(f"    {label:<17} {_size(parts[key])}")


def _resolve(args):
    from slmkit.model.presets import preset

    if Path(args.name).is_dir():
        from slmkit.loading import read_model_config

        config = read_model_config(args.name)
        if args.vocab_size:
            config = config.replace(vocab_size=args.vocab_size)
        return config, f"model directory {args.name}"
    overrides = {"vocab_size": args.vocab_size} if args.vocab_size else {}
    return preset(args.name, **overrides), f"preset {args.name}"


def _millions(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.2f}M"


def _size(n_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n_bytes < 1024 or unit == "TiB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    return ""
