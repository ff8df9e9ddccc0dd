"""`slm prepare` throughput (MB/s of input text) and peak memory, on real TinyStories and a synthetic corpus.

    .venv/bin/python benchmarks/bench_prepare.py                    # synthetic 20, 100, 200 and 400 MB
    .venv/bin/python benchmarks/bench_prepare.py --synthetic-mb 20  # quicker: 2, 10, 20 and 40 MB
    .venv/bin/python benchmarks/bench_prepare.py --fractions 0.1,1  # only 20 and 200 MB

Each case runs `slm prepare` in a fresh process; its peak RSS is the largest of that process and
its workers, and its CPU time the sum over them (os.wait4 on that process). On a shared machine
the wall-clock MB/s depends on what else runs, so each case also reports MB per CPU-second and
the cores it got (CPU seconds / wall seconds), and the load average is recorded before and after.
Memory flatness: the synthetic corpus at 1/10, 1/2, full and double size (--fractions). Peer, in
the same run: Hugging Face `tokenizers` encoding the 2 MiB TinyStories file with all cores
(tokenizing only, no cleaning or dedup): prepare's wall time / the peer's is comparable between
runs on a loaded machine.
Writes benchmarks/results/prepare.md and prepare.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from slmkit.data import read_manifest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "tinystories"
STORY_BYTES = 540  # mean size of a synthetic story


def run_prepare(overrides: list[str], workers: int) -> dict:
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "slmkit", "prepare", str(REPO / "configs" / "local-text.yaml"),
           *overrides, f"workers={workers}", "--no-progress"]
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)  # this run's own rusage (it and its workers)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - start
        if proc.returncode:
            err.seek(0)
            raise SystemExit(f"prepare failed: {err.read().decode().strip()}")
    cpu = usage.ru_utime + usage.ru_stime
    out_dir = next(o.split("=", 1)[1] for o in overrides if o.startswith("out_dir="))
    manifest = read_manifest(out_dir).data
    mb = manifest["input"]["bytes"] / 1e6
    return {"input_mb": round(mb, 2), "docs": manifest["input"]["docs"], "seconds": round(seconds, 2),
            "mb_per_s": round(mb / seconds, 3), "cpu_seconds": round(cpu, 2), "mb_per_cpu_s": round(mb / cpu, 3),
            "cores_used": round(cpu / seconds, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "stage_seconds": manifest["input"].get("stage_seconds"),
            "encoder_batches": manifest["input"].get("encoder_batches"),
            "train_tokens": manifest["splits"]["train"]["tokens"],
            "candidate_pairs": manifest["dedup"]["candidate_pairs"],
            "verified_pairs": manifest["dedup"].get("verified_pairs", 0),
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


def in_subprocess(*args: str) -> dict:
    """Run this script's helper mode in a fresh process: the benchmark process stays small, so the
    prepare processes it starts do not inherit (and report) its memory in their peak RSS."""
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def helper(argv: list[str]) -> None:
    sys.path.insert(0, str(REPO / "src"))
    if argv[0] == "--train-tokenizer":
        from slmkit.tokenizer import train_bpe

        train_bpe([Path(argv[3])], int(argv[2])).save(Path(argv[1]))
        print(json.dumps({"ok": True}))
    else:  # --peer TOK_DIR FILE
        print(json.dumps(peer_tokenize(Path(argv[1]), [Path(argv[2])])))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("--train-tokenizer", "--peer"):
        return helper(sys.argv[1:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--synthetic-mb", type=float, default=200.0)
    parser.add_argument("--fractions", default="0.1,0.5,1,2", help="synthetic cases, as fractions of --synthetic-mb")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--results", default=str(REPO / "benchmarks" / "results"))
    args = parser.parse_args()
    real = [(SHARED / "tinystories_train_head_2MiB.txt", "<|endoftext|>"),
            (SHARED / "tinystories_validation_head_hf.txt", "blank_line"),
            (SHARED / "tinystories_train_head_lowercased.txt", "line")]
    start = time.perf_counter()
    load_before = os.getloadavg()
    peer = None
    results: dict = {"cases": {}}
    with tempfile.TemporaryDirectory(prefix="bench-prepare-") as tmp:
        tmp = Path(tmp)
        tok_dir = tmp / "tok"
        in_subprocess("--train-tokenizer", str(tok_dir), str(args.vocab_size), str(real[0][0]))
        base = [f"tokenizer.path={tok_dir}"]
        cases = {}
        for k, (path, delim) in enumerate(real):
            cases[f"tinystories:{path.name}"] = base + [
                f"sources={{text: {{kind: files, paths: [{path}], delimiter: '{delim}'}}}}", f"out_dir={tmp}/real{k}"]
        # the three pieces as three sources of one run: 7 MB of real stories, less start-up per MB
        cases["tinystories:all three pieces, one run"] = base + [
            "sources={" + ", ".join(f"s{k}: {{kind: files, paths: [{path}], delimiter: '{delim}'}}"
                                    for k, (path, delim) in enumerate(real)) + "}", f"out_dir={tmp}/real-all"]
        for fraction in map(float, args.fractions.split(",")):
            mb = args.synthetic_mb * fraction
            cases[f"synthetic:{mb:g}MB"] = base + [
                f"sources={{text: {{kind: synthetic, limit: {int(mb * 1e6 / STORY_BYTES)}}}}}",
                f"out_dir={tmp}/syn{mb:g}"]
        for name, overrides in cases.items():
            print(f"{name} ...", flush=True)
            results["cases"][name] = run_prepare(overrides, args.workers)
            print("   ", results["cases"][name], flush=True)
            shutil.rmtree(next(o.split("=", 1)[1] for o in overrides if o.startswith("out_dir=")))
            if peer is None:  # the peer once early and once at the end: the load may change
                peer = in_subprocess("--peer", str(tok_dir), str(real[0][0]))
        results["peer_hf_tokenizers_encode_only"] = peer
        results["peer_hf_tokenizers_encode_only_end"] = in_subprocess("--peer", str(tok_dir), str(real[0][0]))
    results["total_seconds"] = round(time.perf_counter() - start, 1)
    results["load_average_before_after"] = [round(x, 2) for x in (*load_before, *os.getloadavg())]
    results.update(
        date=dt.date.today().isoformat(), machine=f"{platform.node()} {platform.machine()} {os.cpu_count()} cores",
        python=platform.python_version(), workers=args.workers, vocab_size=args.vocab_size,
    )
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "prepare.json").write_text(json.dumps(results, indent=1))
    lines = [f"# slm prepare throughput ({results['date']}, {results['machine']}, {args.workers} workers, "
             f"vocab {args.vocab_size})", "",
             "| case | input MB | docs | wall s | MB/s (wall) | CPU s | MB per CPU-s | cores used | peak RSS MB "
             "| dedup s | candidate / verified pairs | exact / near removed |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for name, r in results["cases"].items():
        lines.append(f"| {name} | {r['input_mb']} | {r['docs']:,} | {r['seconds']} | {r['mb_per_s']} | "
                     f"{r['cpu_seconds']} | {r['mb_per_cpu_s']} | {r['cores_used']} | {r['peak_rss_mb']} | "
                     f"{(r['stage_seconds'] or {}).get('dedup', '')} | {r['candidate_pairs']:,} / "
                     f"{r['verified_pairs']:,} | {r['exact_removed']} / {r['near_removed']} |")
    peer, peer_end = results["peer_hf_tokenizers_encode_only"], results["peer_hf_tokenizers_encode_only_end"]
    lines += ["", f"Peer (same run, after the first case / at the end): HF tokenizers `encode_batch` alone on the "
              f"2 MiB TinyStories file with all cores: {peer['mb_per_s']} / {peer_end['mb_per_s']} MB/s "
              "(tokenizing only; prepare also cleans, hashes, dedups and writes shards).",
              "Peak RSS is the largest single process (the main process or one worker). MB per CPU-s counts every "
              "process of the run (main + workers), start-up included; on 2 free cores the wall MB/s would be at "
              "most twice it.",
              f"Load average (1/5/15 min) before: {results['load_average_before_after'][:3]}, after: "
              f"{results['load_average_before_after'][3:]} (prepare itself uses about 2 cores)."]
    (out / "prepare.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
