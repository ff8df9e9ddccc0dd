"""The `slm` command: parses arguments and calls one function per verb.

Each verb lives in its own module in this package with `register(subparsers)`; the module
builds its parser (with examples in --help) and sets `func` to the function that runs it.
Library errors (`SlmError`) become one line on stderr and exit code 1; `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from slmkit import __version__
from slmkit.errors import SlmError

# Verb modules, in the order `slm --help` lists them. Only verbs that work are listed here.
VERB_MODULES = [
    "slmkit.cli.tokenizer_cmd",
    "slmkit.cli.prepare_cmd",
    "slmkit.cli.data_cmd",
    "slmkit.cli.train_cmd",
    "slmkit.cli.finetune_cmd",
    "slmkit.cli.align_cmd",
    "slmkit.cli.reward_cmd",
    "slmkit.cli.rl_cmd",
    "slmkit.cli.model_cmd",
    "slmkit.cli.export_cmd",
    "slmkit.cli.generate_cmd",
    "slmkit.cli.chat_cmd",
    "slmkit.cli.quantize_cmd",
    "slmkit.cli.eval_cmd",
    "slmkit.cli.lm_eval_cmd",
    "slmkit.cli.serve_cmd",
    "slmkit.cli.pipeline_cmd",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="slm",
        description="slmkit: build small language models from scratch, from raw text to a served model.",
        epilog="Run 'slm VERB --help' for a verb's options and examples.",
    )
    parser.add_argument("--version", action="version", version=f"slmkit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB")
    for name in VERB_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    own_process = argv is None  # run as `slm ...` / `python -m slmkit`, not called from Python code
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "passes_through", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra_args = extra  # for a verb that hands its arguments to another program (slm lm-eval)
    args.own_process = own_process
    if not getattr(args, "func", None):
        # A verb group called without its sub-verb prints that group's help.
        (getattr(args, "group_parser", None) or parser).print_help()
        return 2
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`slm ... | head`): stop quietly, as Unix tools do. Point stdout at
        # /dev/null so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (SlmError, FileNotFoundError, PermissionError, IsADirectoryError) as e:
        if args.debug:
            raise
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 1
    return int(result or 0)


def _one_line(error: BaseException) -> str:
    if isinstance(error, (FileNotFoundError, PermissionError, IsADirectoryError)) and error.filename:
        return f"{error.strerror}: {error.filename}"
    return " ".join(str(error).split()) or type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
