"""`slm train CONFIG [overrides]`: train a model from a recipe, alone or under torchrun."""

from __future__ import annotations

import argparse

EXAMPLES = """examples:
  slm train configs/demo.yaml                                   # the CPU demo recipe
  slm train configs/demo.yaml train.max_steps=200 model.n_layers=2 train.out_dir=runs/quick
  slm train configs/demo.yaml train.resume=auto                 # continue from the latest valid checkpoint
  slm train configs/stories15m.yaml train.precision=bf16 train.compile=true
  torchrun --nproc_per_node=2 -m slmkit train configs/demo.yaml train.parallel=ddp   # or fsdp, tp, pp
  torchrun --nproc_per_node=4 -m slmkit train configs/stories15m.yaml train.mesh="dp=2,tp=2"   # FSDP x TP
  torchrun --nproc_per_node=4 -m slmkit train configs/qwen3-283m.yaml train.mesh="pp=2,dp=2" train.pp_schedule=1f1b
  torchrun --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 \\
      --rdzv_id=run1 -m slmkit train configs/gpt2-124m.yaml     # on each node

Writes to train.out_dir: config.yaml (resolved), run_info.json (git commit, versions, hardware),
metrics.jsonl, tensorboard/, curves.png, checkpoints/step_NNNNNNNN/ (model + optimizer + RNG + data
state; the last train.keep_last plus the best by validation loss) and the final model
(model.safetensors, config.json, tokenizer.json) with run_status.json (finished, time_limit or interrupted).
Ctrl-C or SIGTERM saves a checkpoint and exits.
With tp or pp in the mesh, checkpoints hold DCP shards (distributed/) that any layout resumes from;
docs/scaling-out.md has the layouts and multi-node launches (SSH, SLURM, Kubernetes).
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model from a YAML recipe (CPU, one GPU, or torchrun DDP/FSDP)",
        description="Train a decoder from a recipe with sections model (a preset and/or fields), data (what "
        "'slm prepare' reads; prepared first when missing) and train (optimizer, schedule, precision, "
        "checkpoints, evaluation). Dotted overrides change any field.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", help="YAML recipe (see configs/)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=3e-4 model.n_layers=2")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args) -> int:
    from slmkit.train.distributed import launched_rank
    from slmkit.train.run import train_from_recipe

    overrides = list(args.overrides) + (["train.progress=false", "data.progress=false"] if args.no_progress else [])
    result = train_from_recipe(args.config, overrides)
    if launched_rank() != 0:  # under torchrun the summary comes from rank 0 alone
        return 0
    if result.get("val_loss") is not None:
        print(f"validation: loss {result['val_loss']:.4f}, perplexity {result['val_ppl']:.2f}"
              + (f", {result['val_bpb']:.4f} bits/byte" if result.get("val_bpb") else ""))
    print(f"{result['status']} at step {result['step']} ({result['skipped_steps']} skipped); "
          f"run directory {result['run_dir']}, checkpoint {result['checkpoint']}"
          + (f", curves {result['plot']}" if result.get("plot") else ""))
    return 0
