"""`slm align CONFIG [overrides]`: DPO (sigmoid, IPO, hinge, robust) of a policy on preference pairs."""

from __future__ import annotations

import argparse

EXAMPLES = """examples:
  slm data preferences-synthetic --out data/prefs.jsonl           # bundled checkable pairs (offline)
  slm align configs/dpo-lora.yaml policy=runs/demo-sft             # DPO on an SFT run (its adapter trains on)
  slm align configs/dpo-lora.yaml policy=runs/demo-sft dpo.loss_type=ipo dpo.beta=0.5
  slm align configs/dpo-lora.yaml policy=runs/demo-sft dpo.reference=precomputed   # half the forward passes
  slm align configs/dpo-full.yaml policy=runs/demo-sft-merged      # every weight trains; reference a frozen copy
  slm align configs/dpo-lora.yaml policy=runs/demo-sft train.resume=auto   # continue after Ctrl-C
  torchrun --nproc_per_node=2 -m slmkit align configs/dpo-lora.yaml policy=runs/demo-sft

The log shows rewards/chosen, rewards/rejected, rewards/margins and rewards/accuracies per step, and the
held-out val_accuracy (chosen reward above rejected; a tie counts one half, so it starts at 0.5). The
loss starts at ln 2 = 0.6931 (sigmoid): the policy equals its reference at step 0. A LoRA run directory is
an adapter directory that slm chat / generate / serve --adapter / export load with its base.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "align",
        help="preference alignment: DPO (sigmoid / ipo / hinge / robust), full, LoRA or QLoRA",
        description="Align a policy (a model directory or an SFT adapter) on preference pairs (JSONL of "
        "prompt/chosen/rejected, or a hub dataset) with the Trainer: sections policy, method, lora, dpo, "
        "data and train.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", help="YAML recipe (configs/dpo-*.yaml)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. policy=runs/demo-sft dpo.beta=0.2")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args) -> int:
    from slmkit.align.config import read_align_config
    from slmkit.align.run import align
    from slmkit.train.distributed import launched_rank

    overrides = list(args.overrides) + (["train.progress=false"] if args.no_progress else [])
    result = align(read_align_config(args.config, overrides))
    if launched_rank() != 0:  # under torchrun the summary comes from rank 0 alone
        return 0
    if result.get("val_accuracy") is not None:
        print(f"held-out pairs: preference accuracy {result['val_accuracy']:.3f}, margin {result['val_margin']:.3f}, "
              f"DPO loss {result['val_loss']:.4f}")
    print(f"{result['status']} at step {result['step']} ({result['skipped_steps']} skipped); "
          f"run directory {result['run_dir']}")
    return 0
