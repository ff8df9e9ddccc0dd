"""`slm reward CONFIG [overrides]`: a Bradley-Terry reward model (the base with a scalar head) on preference pairs."""

from __future__ import annotations

import argparse

EXAMPLES = """examples:
  slm data preferences-synthetic --out data/prefs.jsonl      # bundled checkable pairs (offline)
  slm reward configs/reward.yaml base=runs/demo-sft           # an SFT adapter run is merged into its base
  slm reward configs/reward.yaml base=runs/demo-sft reward.center_rewards_coefficient=0.01
  slm reward configs/reward.yaml base=runs/demo-sft train.resume=auto   # continue after Ctrl-C
  torchrun --nproc_per_node=2 -m slmkit reward configs/reward.yaml base=runs/demo-sft

The run directory is a reward model: the decoder as an ordinary model directory plus reward_head.safetensors
and reward.json (slmkit.model.reward_model.load_reward_model reads it). The log shows accuracy,
rewards/chosen, rewards/rejected and rewards/margins per step, and the held-out val_accuracy.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "reward",
        help="train a Bradley-Terry reward model on preference pairs",
        description="Train a reward model (the base decoder with a scalar head read at the last token) on "
        "preference pairs with the Trainer: sections base, reward, data and train.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", help="YAML recipe (configs/reward.yaml)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. base=runs/demo-sft train.lr=5e-5")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args) -> int:
    from slmkit.align.config import read_reward_config
    from slmkit.align.reward_run import train_reward
    from slmkit.train.distributed import launched_rank

    overrides = list(args.overrides) + (["train.progress=false"] if args.no_progress else [])
    result = train_reward(read_reward_config(args.config, overrides))
    if launched_rank() != 0:
        return 0
    if result.get("val_accuracy") is not None:
        print(f"held-out pairs: accuracy {result['val_accuracy']:.3f}, margin {result['val_margin']:.3f}, "
              f"loss {result['val_loss']:.4f}")
    print(f"{result['status']} at step {result['step']} ({result['skipped_steps']} skipped); "
          f"reward model in {result['run_dir']}")
    return 0
