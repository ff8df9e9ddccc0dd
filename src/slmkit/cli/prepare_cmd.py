"""`slm prepare CONFIG [overrides]`: text sources -> cleaned, deduplicated, tokenized shards."""

from __future__ import annotations

import argparse

EXAMPLES = """examples:
  slm prepare configs/synthetic.yaml                       # offline: generated children's stories
  slm prepare configs/tinystories.yaml tokenizer.path=runs/tok out_dir=runs/tinystories
  slm prepare configs/local-text.yaml sources.text.paths=[data/*.txt] sources.text.delimiter=blank_line
  slm prepare configs/synthetic.yaml sources.stories.limit=1000 workers=2 dedup.threshold=0.9

Writes OUT_DIR/{train,val}_NNNNN.bin (uint16/uint32 tokens, end-of-text after each document),
OUT_DIR/manifest.json (counts, sha256, tokenizer fingerprint, cleaning and dedup statistics),
OUT_DIR/tokenizer/ and OUT_DIR/data_config.yaml. An interrupted run resumes where it stopped.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "prepare",
        help="turn text sources into cleaned, deduplicated, tokenized shards",
        description="Read sources (TinyStories from the hub, local .txt/.jsonl/.parquet, synthetic stories), "
        "clean, deduplicate (exact + MinHash), tokenize in several processes and write memmap shards.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", help="YAML recipe (see configs/)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. out_dir=runs/data workers=2")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args) -> int:
    from slmkit.config import load_config
    from slmkit.data import DataConfig, prepare

    overrides = list(args.overrides) + (["progress=false"] if args.no_progress else [])
    cfg = load_config(DataConfig, args.config, overrides)
    if getattr(args, "own_process", False):
        # Process-wide allocator setting that keeps prepare's memory flat; it would slow later torch
        # work in the same process (~1.7x per training step, measured), so only when the process is ours.
        from slmkit.data.heap import large_arrays_from_mmap

        large_arrays_from_mmap()
    manifest = prepare(cfg)
    data = manifest.data
    for split, info in data["splits"].items():
        print(f"{split}: {info['tokens']:,} tokens, {info['docs']:,} documents, {len(info['shards'])} shard(s)")
    dedup = data["dedup"]
    removed = sum(sum(s["cleaning"]["removed_docs"].values()) for s in data["sources"].values())
    print(f"read {data['input']['docs']:,} documents ({data['input']['bytes'] / 1e6:.1f} MB) "
          f"in {data['input']['seconds']:.1f}s ({data['input']['mb_per_s']:.2f} MB/s); "
          f"cleaning removed {removed:,}, exact dedup {dedup['exact_removed']:,}, near dedup {dedup['near_removed']:,}")
    print(f"wrote {cfg.out_dir}/ ({data['dtype']} shards, manifest.json, tokenizer/, data_config.yaml)")
    return 0
