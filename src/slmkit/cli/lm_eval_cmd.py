"""`slm lm-eval ARGS...`: lm-eval's own command line, with slmkit registered as its model "slmkit"."""

from __future__ import annotations

import argparse
import sys

EXAMPLES = """examples:
  slm lm-eval --model slmkit --model_args path=runs/demo --tasks lambada_openai
  slm lm-eval --model slmkit --model_args path=runs/demo-sft,max_length=256 --tasks hellaswag --limit 200
  slm lm-eval run --model slmkit --model_args path=runs/demo --tasks arc_easy --batch_size 16

Everything after `lm-eval` goes to lm-eval unchanged (`slm lm-eval --help` shows lm-eval's help). lm-eval has no
plugin entry point for models, so its own `lm_eval` command cannot find slmkit's; this verb registers it first.
--model_args: path (model, run, adapter or quantized directory), base (an adapter's base), max_length, dtype
(float32 | bfloat16), device. Needs `pip install 'slmkit[eval]'` (lm-eval). Offline, lm-eval's tasks still
download their datasets from the Hugging Face hub: use `slm eval --task` for the local copies.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "lm-eval", help="run lm-eval's harness with slmkit models (--model slmkit)", add_help=False,
        description="lm-eval's command line with slmkit registered as the model 'slmkit'.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("lm_eval_args", nargs=argparse.REMAINDER, help="arguments for lm-eval")
    parser.set_defaults(func=run, passes_through=True)


def run(args) -> int:
    from slmkit.errors import SlmError

    try:
        from lm_eval.__main__ import cli_evaluate
    except ImportError:
        raise SlmError("slm lm-eval needs lm-eval: pip install 'slmkit[eval]'") from None
    from slmkit.eval.lm_eval_model import register as register_slmkit_model
    from slmkit.finetune.loading import load_for_use

    register_slmkit_model(loader=load_for_use)
    forwarded = [*args.extra_args, *args.lm_eval_args]
    if not forwarded or forwarded[0] in ("-h", "--help"):
        print("slm lm-eval: lm-eval's command line with slmkit registered as --model slmkit.\n")
        print(EXAMPLES)
        print("lm-eval's own help follows.\n")
        forwarded = forwarded or ["--help"]
    saved = sys.argv
    sys.argv = ["lm-eval", *forwarded]
    try:
        cli_evaluate()
    except SystemExit as e:  # lm-eval's argparse and its own exits
        return int(e.code or 0) if not isinstance(e.code, str) else 1
    finally:
        sys.argv = saved
    return 0
