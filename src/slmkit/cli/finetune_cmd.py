"""`slm finetune CONFIG [overrides]`: full, LoRA or QLoRA chat fine-tuning of a base model."""

from __future__ import annotations

import argparse

EXAMPLES = """examples:
  slm data sft-synthetic --out data/sft.jsonl                  # the bundled instruction set (offline)
  slm finetune configs/sft-lora.yaml base=runs/demo            # LoRA chat SFT
  slm finetune configs/sft-qlora.yaml base=hf/Qwen3-0.6B       # NF4 base + LoRA; any model dir slm loads
  slm finetune configs/sft-full.yaml base=runs/demo train.lr=5e-5
  slm finetune configs/sft-lora.yaml base=runs/demo train.resume=auto   # continue after Ctrl-C
  torchrun --nproc_per_node=2 -m slmkit finetune configs/sft-lora.yaml base=runs/demo

A LoRA/QLoRA run directory is an adapter directory (adapter.json, adapter.safetensors, tokenizer) that
slm chat / generate / serve --adapter / export load with its base; checkpoints hold the adapters and
their optimizer state only. A full fine-tune's directory is an ordinary model directory.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "finetune",
        help="chat fine-tuning: full, LoRA or QLoRA, loss on assistant tokens only",
        description="Fine-tune a base model on chat data (JSONL of messages or prompt/completion, or a hub "
        "dataset) with the Trainer: sections base, method (full|lora|qlora), lora, data and train.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", help="YAML recipe (configs/sft-*.yaml)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. base=runs/demo lora.r=16")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args) -> int:
    from slmkit.train.distributed import launched_rank
    from slmkit.finetune.config import read_finetune_config
    from slmkit.finetune.run import finetune

    overrides = list(args.overrides) + (["train.progress=false"] if args.no_progress else [])
    result = finetune(read_finetune_config(args.config, overrides))
    if launched_rank() != 0:  # under torchrun the summary comes from rank 0 alone
        return 0
    if result.get("val_loss") is not None:
        print(f"held-out assistant tokens: loss {result['val_loss']:.4f}, perplexity {result['val_ppl']:.2f}")
    print(f"{result['status']} at step {result['step']} ({result['skipped_steps']} skipped); "
          f"run directory {result['run_dir']}")
    return 0
