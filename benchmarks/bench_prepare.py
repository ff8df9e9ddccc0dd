"""`slm prepare` throughput (MB/s of input text) and peak memory, on real TinyStories and a synthetic corpus.

    .venv/bin/python benchmarks/bench_prepare.py                    # 200 MB synthetic
    .venv/bin/python benchmarks/bench_prepare.py --synthetic-mb 20  # quicker

Each case runs `slm prepare` in a fresh process; peak RSS is the largest of that process and its
workers (getrusage of children). Memory flatness: the synthetic corpus is run at 1/4 size and
full size. Peer, in the same run: Hugging Face `tokenizers` encoding the same text with all
cores (tokenizing only, no cleaning or dedup), to show what the rest of the pipeline costs.
Writes benchmarks/results/prepare.md and prepare.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "tinystories"
STORY_BYTES = 540  # mean size of a synthetic story


def run_prepare(overrides: list[str], workers: int) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "slmkit", "prepare", str(REPO / "configs" / "local-text.yaml"),
           *overrides, f"workers={workers}", "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"prepare failed: {done.stderr.strip()}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out_dir = next(o.split("=", 1)[1] for o in overrides if o.startswith("out_dir="))
    manifest = json.loads((Path(out_dir) / "manifest.json").read_text())
    mb = manifest["input"]["bytes"] / 1e6
    return {"input_mb": round(mb, 2), "docs": manifest["input"]["docs"], "seconds": round(seconds, 2),
            "mb_per_s": round(mb / seconds, 3), "peak_rss_mb": round(max(peak, before) / 1024, 1),
            "train_tokens": manifest["splits"]["train"]["tokens"],
            "near_removed": manifest["dedup"]["near_removed"], "exact_removed": manifest["dedup"]["exact_removed"]}


def peer_tokenize(tok_dir: Path, files: list[Path]) -> dict:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    texts = [f.read_text(encoding="utf-8") for f in files]
    docs = [d for t in texts for d in t.split("<|endoftext|>")]
    start = time.perf_counter()
    tok.encode_batch(docs)
    seconds = time.perf_counter() - start
    mb = sum(len(t.encode()) for t in texts) / 1e6
    return {"input_mb": round(mb, 2), "seconds": round(seconds, 2), "mb_per_s": round(mb / seconds, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--synthetic-mb", type=float, default=200.0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--results", default=str(REPO / "benchmarks" / "results"))
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    from slmkit.tokenizer import train_bpe

    real = [(SHARED / "tinystories_train_head_2MiB.txt", "<|endoftext|>"),
            (SHARED / "tinystories_validation_head_hf.txt", "blank_line"),
            (SHARED / "tinystories_train_head_lowercased.txt", "line")]
    results: dict = {"cases": {}}
    with tempfile.TemporaryDirectory(prefix="bench-prepare-") as tmp:
        tmp = Path(tmp)
        tok_dir = tmp / "tok"
        train_bpe([real[0][0]], args.vocab_size).save(tok_dir)
        base = [f"tokenizer.path={tok_dir}"]
        cases = {}
        for k, (path, delim) in enumerate(real):
            cases[f"tinystories:{path.name}"] = base + [
                f"sources={{text: {{kind: files, paths: [{path}], delimiter: '{delim}'}}}}", f"out_dir={tmp}/real{k}"]
        for label, mb in (("synthetic-quarter", args.synthetic_mb / 4), ("synthetic", args.synthetic_mb)):
            cases[f"{label}:{mb:g}MB"] = base + [
                f"sources={{text: {{kind: synthetic, limit: {int(mb * 1e6 / STORY_BYTES)}}}}}", f"out_dir={tmp}/{label}"]
        for name, overrides in cases.items():
            print(f"{name} ...", flush=True)
            results["cases"][name] = run_prepare(overrides, args.workers)
            print("   ", results["cases"][name], flush=True)
        results["peer_hf_tokenizers_encode_only"] = peer_tokenize(tok_dir, [real[0][0]])
    results.update(
        date=dt.date.today().isoformat(), machine=f"{platform.node()} {platform.machine()} {os.cpu_count()} cores",
        python=platform.python_version(), workers=args.workers, vocab_size=args.vocab_size,
    )
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "prepare.json").write_text(json.dumps(results, indent=1))
    lines = [f"# slm prepare throughput ({results['date']}, {results['machine']}, {args.workers} workers, "
             f"vocab {args.vocab_size})", "",
             "| case | input MB | docs | seconds | MB/s | peak RSS MB | exact / near removed |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for name, r in results["cases"].items():
        lines.append(f"| {name} | {r['input_mb']} | {r['docs']:,} | {r['seconds']} | {r['mb_per_s']} | "
                     f"{r['peak_rss_mb']} | {r['exact_removed']} / {r['near_removed']} |")
    peer = results["peer_hf_tokenizers_encode_only"]
    lines += ["", f"Peer (same run): HF tokenizers `encode_batch` alone on the 2 MiB TinyStories file: "
              f"{peer['mb_per_s']} MB/s (tokenizing only; prepare also cleans, hashes, dedups and writes shards).",
              "Peak RSS is the largest single process (the main process or one worker)."]
    (out / "prepare.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
