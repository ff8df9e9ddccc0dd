"""`slm rl CONFIG [overrides]`: GRPO or PPO with rule rewards, your own Python reward or a reward model."""

from __future__ import annotations

import argparse

EXAMPLES = """examples:
  slm data sft-synthetic --out data/sft.jsonl                             # prompts with code checks (offline)
  slm rl configs/grpo.yaml policy=runs/demo-sft reward=rules:story        # the story-request checks as reward
  slm rl configs/grpo.yaml policy=runs/demo-sft reward=rules:story+finished grpo.beta=0.04   # + KL to the reference
  slm rl configs/grpo.yaml policy=runs/demo-sft reward=runs/demo-reward   # a reward model (slm reward)
  slm rl configs/grpo.yaml policy=runs/demo-sft reward=python:my_rules:brevity   # my_rules.brevity(rollout) -> float
  slm rl configs/ppo.yaml policy=runs/demo-sft reward=runs/demo-reward    # PPO: value head, GAE, KL penalty
  slm rl configs/grpo.yaml policy=runs/demo-sft train.resume=auto         # continue after Ctrl-C

Bundled rules: story (the prompt's check passes), finished (ended with EOS), sentence (ends a sentence),
concise (1 - tokens / max_new_tokens); '+' sums them. The log shows reward, reward_std, kl, clip_ratio,
completion_tokens and finished per step, and val_reward (greedy, held-out prompts) at each evaluation.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "rl",
        help="reinforcement learning: GRPO or PPO with rule rewards or a reward model",
        description="Train a policy (a model directory or an SFT adapter) with GRPO or PPO on prompts (JSONL of "
        "prompt or messages records): sections policy, reward, algorithm, method, lora, grpo, ppo, data and train.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", help="YAML recipe (configs/grpo.yaml)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. policy=runs/demo-sft reward=rules:story")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args) -> int:
    from slmkit.align.config import read_rl_config
    from slmkit.align.rl_run import rl
    from slmkit.train.distributed import launched_rank

    overrides = list(args.overrides) + (["train.progress=false"] if args.no_progress else [])
    result = rl(read_rl_config(args.config, overrides))
    if launched_rank() != 0:
        return 0
    if result.get("val_reward") is not None:
        print(f"held-out prompts: mean reward {result['val_reward']:.3f}, finished {result['val_finished']:.3f}")
    print(f"{result['status']} at step {result['step']} ({result['skipped_steps']} skipped); "
          f"run directory {result['run_dir']}")
    return 0
