"""`slm pipeline RECIPE [overrides] [--from STAGE] [--until STAGE] [--status]`: the capstone, end to end."""

from __future__ import annotations

import argparse

EXAMPLES = """examples:
  slm pipeline configs/capstone/cpu.yaml              # ~30 CPU minutes on 2 cores: a small but complete run
  slm pipeline configs/capstone/gpu-125m.yaml         # one GPU: a 125M model on ~100M+ curated tokens
  slm pipeline configs/capstone/cpu.yaml --from sft   # re-run SFT and what follows; earlier stages are reused
  slm pipeline configs/capstone/cpu.yaml sft.train.lr=2e-3     # a changed section re-runs that stage onwards
  slm pipeline configs/capstone/cpu.yaml --status     # what is done, what would run, and where the logs are
  docker compose -f runs/capstone/deploy/compose.yaml up      # the served result, with its health check

Stages: data (slm prepare: sources, cleaning, dedup, tokenizer, shards) -> pretrain (slm train) -> sft-data
-> sft (slm finetune) -> preferences (slm data) -> dpo (slm align) -> export (merged, Hugging Face, GGUF)
-> quantize (int8 / int4) -> eval (every model and the baselines) -> deploy (container files, a served
check, a load test) -> report (ROOT/report/report.md + report.html). Each writes its directory under the
recipe's root, with its log in ROOT/logs/. A stage whose section and inputs are unchanged is reused; one
stopped by Ctrl-C, SIGTERM or SIGKILL continues from its last checkpoint when the command is run again.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "pipeline",
        help="raw text to an evaluated, aligned, quantized, served model and its report, in one command",
        description="Run the capstone's stages in order from one recipe (configs/capstone/*.yaml), reusing the "
        "stages that are finished and unchanged.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", help="YAML recipe (configs/capstone/*.yaml)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. pretrain.train.max_steps=100")
    parser.add_argument("--from", dest="start_from", metavar="STAGE", help="re-run this stage and every later one")
    parser.add_argument("--until", dest="stop_after", metavar="STAGE", help="stop after this stage")
    parser.add_argument("--status", action="store_true", help="show each stage's state and what a run would do")
    parser.set_defaults(func=run)


def run(args) -> int:
    from slmkit.pipeline import read_pipeline_config, run_pipeline
    from slmkit.pipeline.status import print_status

    cfg = read_pipeline_config(args.config, args.overrides)
    if args.status:
        print_status(cfg, args.start_from)
        return 0
    run_pipeline(cfg, start_from=args.start_from, stop_after=args.stop_after)
    return 0
