"""`slm data stats DIR`: tokens, documents, document lengths and top tokens of prepared shards.
`slm data sft-synthetic --out data/sft.jsonl`: the bundled chat data for fine-tuning, with a checkable held-out split.
`slm data preferences-synthetic --out data/prefs.jsonl`: the bundled preference pairs for DPO and reward models."""

from __future__ import annotations

import argparse
import json

EXAMPLES = """examples:
  slm data stats runs/data
  slm data stats runs/data --top 50 --json
"""

SFT_EXAMPLES = """examples:
  slm data sft-synthetic --out data/sft.jsonl                    # + data/sft.heldout.jsonl
  slm data sft-synthetic --out data/sft.jsonl --examples 20000 --heldout 500 --seed 1

Each line is {"messages": [...], "check": {...}}: story requests, questions about a story and
two-turn chats, made by the story generator. Held-out examples use (name, object) pairs that
train never does; their "check" says what a correct final answer must name.
"""

PREFS_EXAMPLES = """examples:
  slm data preferences-synthetic --out data/prefs.jsonl          # + data/prefs.heldout.jsonl
  slm data preferences-synthetic --out data/prefs.jsonl --pairs 5000 --heldout 400 --seed 1

Each line is {"prompt": [...], "chosen": [...], "rejected": [...], "flaw": ..., "check": {...}}: chosen is
the synthetic instruction data's answer, which follows the request; rejected is the same answer with one
flaw planted (wrong_name, wrong_character, missing_object, unfinished, wrong_answer), so a rule tells them
apart. Held-out pairs use the instruction data's held-out (name, object) casts.
"""

CONSTITUTION_EXAMPLES = """examples:
  slm data preferences --constitution configs/constitution.yaml --policy runs/demo-sft \\
      --prompts data/sft.jsonl --limit 500 --out data/prefs-constitution.jsonl
  slm align configs/dpo-lora.yaml policy=runs/demo-sft data.train=data/prefs-constitution.jsonl data.eval=null

For each prompt the policy samples --samples drafts; principles with a rule rank them (a draft satisfying every
rule is chosen, one breaking some rejected); otherwise the policy critiques and revises its draft and the revision
is chosen. Prompts where neither gives a pair are skipped and counted.
"""


def register(subparsers) -> None:
    group = subparsers.add_parser("data", help="inspect prepared token shards; write the bundled SFT and preference data")
    group.set_defaults(group_parser=group)
    verbs = group.add_subparsers(dest="data_verb", metavar="VERB")
    stats = verbs.add_parser(
        "stats",
        help="tokens, documents, length histogram and top tokens of a shard directory",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    stats.add_argument("dir", help="directory written by 'slm prepare' (with manifest.json)")
    stats.add_argument("--top", type=int, default=20, help="how many of the most frequent tokens to show")
    stats.add_argument("--no-verify", action="store_true", help="skip the sha256 check of the shards")
    stats.add_argument("--json", action="store_true", help="print the report as JSON")
    stats.set_defaults(func=run_stats)
    sft = verbs.add_parser(
        "sft-synthetic",
        help="write synthetic chat data for fine-tuning (train + checkable held-out split)",
        epilog=SFT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sft.add_argument("--out", required=True, help="train file to write (.jsonl); the held-out split goes beside it")
    sft.add_argument("--examples", type=int, default=4000, help="number of train examples")
    sft.add_argument("--heldout", type=int, default=200, help="number of held-out examples (0: an empty file)")
    sft.add_argument("--seed", type=int, default=0, help="random seed; the same seed writes the same files")
    sft.add_argument("--max-words", type=int, help="most words in one example, all turns together (default 150)")
    sft.set_defaults(func=run_sft_synthetic)
    prefs = verbs.add_parser(
        "preferences-synthetic",
        help="write synthetic preference pairs for DPO / reward models (train + held-out split)",
        epilog=PREFS_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    prefs.add_argument("--out", required=True, help="train file to write (.jsonl); the held-out split goes beside it")
    prefs.add_argument("--pairs", type=int, default=2000, help="number of train pairs")
    prefs.add_argument("--heldout", type=int, default=200, help="number of held-out pairs (0: an empty file)")
    prefs.add_argument("--seed", type=int, default=0, help="random seed; the same seed writes the same files")
    prefs.set_defaults(func=run_preferences_synthetic)
    cai = verbs.add_parser(
        "preferences",
        help="make preference pairs with a policy and a constitution (rule-ranked drafts, or critique and revise)",
        epilog=CONSTITUTION_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cai.add_argument("--constitution", required=True, help="YAML list of principles (configs/constitution.yaml)")
    cai.add_argument("--policy", required=True, help="the model that drafts, critiques and revises (any dir slm loads)")
    cai.add_argument("--prompts", required=True, help="JSONL of prompt or messages records (e.g. data/sft.jsonl)")
    cai.add_argument("--out", required=True, help="the pairs to write (.jsonl)")
    cai.add_argument("--limit", type=int, help="use the first N prompts")
    cai.add_argument("--samples", type=int, default=4, help="drafts per prompt (default 4)")
    cai.add_argument("--max-new-tokens", type=int, default=160)
    cai.add_argument("--temperature", type=float, default=1.0, help="for the drafts (critiques and revisions: greedy)")
    cai.add_argument("--seed", type=int, default=0)
    cai.set_defaults(func=run_preferences)


def run_stats(args) -> int:
    from pathlib import Path

    from slmkit.data import data_stats

    report = data_stats(args.dir, top=args.top, verify=not args.no_verify)
    decode = _decoder(Path(args.dir) / "tokenizer")
    for split in report["splits"].values():
        split["top_tokens"] = [(i, n, decode(i)) for i, n in split["top_tokens"]]
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"{args.dir}: {report['dtype']} tokens, tokenizer {report['tokenizer']}")
    for name, split in report["splits"].items():
        print(f"\n{name}: {split['tokens']:,} tokens, {split['docs']:,} documents in {split['shards']} shard(s), "
              f"{split['mean_doc_tokens']:.1f} tokens per document")
        print("  document length (tokens):")
        most = max(split["histogram"].values()) or 1
        for edge, n in split["histogram"].items():
            print(f"    {edge:>7} {n:>9,} {'#' * round(40 * n / most)}")
        print("  top tokens:")
        total = split["tokens"] or 1
        for i, n, text in split["top_tokens"]:
            print(f"    {i:>7} {text!r:<16} {n:>11,} {100 * n / total:5.2f}%")
    return 0


def run_sft_synthetic(args) -> int:
    from slmkit.data.sources.instructions import write_instruction_files

    limit = {} if args.max_words is None else {"max_words": args.max_words}
    report = write_instruction_files(args.out, examples=args.examples, heldout=args.heldout, seed=args.seed, **limit)
    parts = []
    for split, row in report.items():
        counts = ", ".join(f"{kind} {n}" for kind, n in row["counts"].items())
        parts.append(f"{sum(row['counts'].values())} {split.replace('heldout', 'held-out')} ({counts}) to {row['path']}")
    print("wrote " + " and ".join(parts))
    return 0


def run_preferences_synthetic(args) -> int:
    from slmkit.data.sources.preference_pairs import write_preference_files

    report = write_preference_files(args.out, pairs=args.pairs, heldout=args.heldout, seed=args.seed)
    parts = []
    for split, row in report.items():
        counts = ", ".join(f"{flaw} {n}" for flaw, n in row["counts"].items())
        parts.append(f"{sum(row['counts'].values())} {split.replace('heldout', 'held-out')} pairs ({counts}) "
                     f"to {row['path']}")
    print("wrote " + " and ".join(parts))
    return 0


def run_preferences(args) -> int:
    from slmkit.align.constitution import ConstitutionalPairs, read_constitution, write_constitutional_pairs
    from slmkit.align.prompt_data import load_prompts
    from slmkit.finetune.loading import load_for_use
    from slmkit.infer import Generator

    principles = read_constitution(args.constitution)
    prompts = load_prompts(args.prompts, limit=args.limit)
    model, tokenizer, eos = load_for_use(args.policy)
    maker = ConstitutionalPairs(Generator(model, tokenizer, eos, max_batch=max(args.samples, 1)), principles,
                                samples=args.samples, max_new_tokens=args.max_new_tokens,
                                temperature=args.temperature, seed=args.seed)
    report = write_constitutional_pairs(maker, prompts, args.out)
    print(f"wrote {report['pairs']} pairs ({report['ranked']} ranked by the rules, {report['revised']} revised) "
          f"from {len(prompts)} prompts ({report['skipped']} gave none) to {report['path']}")
    return 0


def _decoder(tokenizer_dir):
    try:
        from slmkit.tokenizer import load_tokenizer

        tok = load_tokenizer(tokenizer_dir)
        return lambda i: tok.decode([i])
    except Exception:  # the stats stand without a tokenizer; show ids only
        return lambda i: f"<{i}>"
