"""Load test for `slm serve`: 32 concurrent streaming clients against the `tiny` model, with continuous
batching (--max-batch 32) and one request at a time (--max-batch 1), alternated on the same CPU.

Reports per configuration: requests, failures, p50/p95 time to first token, p50 request latency and
aggregate generated tokens/s; and the throughput ratio (goal: batched >= 3x one-at-a-time).
Loopback only; bounded in requests (--requests per phase) and time (--phase-seconds: no new request
starts after it), so it always stops by itself.

    python benchmarks/bench_serve.py                   # 2 rounds x 2 configs x 256 requests
    python benchmarks/bench_serve.py --requests 64 --rounds 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_DATA, write_results  # noqa: E402


def build_tiny_run(directory: Path) -> tuple[Path, list[str]]:
    """The `tiny` preset (random weights; speed does not depend on them) with a BPE tokenizer trained on
    TinyStories text; returns the run and some story openings to use as prompts."""
    import torch

    from slmkit.model import Decoder, preset, save_pretrained
    from slmkit.tokenizer import train_bpe_from_texts

    text = (SHARED_DATA / "tinystories" / "tinystories_train_head_2MiB.txt").read_text(encoding="utf-8")[:300_000]
    tokenizer = train_bpe_from_texts([text], 2048)
    tokenizer.save(directory / "tokenizer")
    torch.manual_seed(0)
    model = Decoder(preset("tiny", vocab_size=tokenizer.vocab_size)).eval()
    save_pretrained(model, directory / "tiny", tokenizer_dir=directory / "tokenizer")
    lines = [line.strip() for line in text.splitlines() if len(line.strip()) > 40]
    prompts = [" ".join(line.split()[:12]) for line in lines[:500]]
    return directory / "tiny", prompts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run: Path, max_batch: int, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "slmkit", "serve", str(run), "--host", "127.0.0.1",
                             "--port", str(port), "--max-batch", str(max_batch), "--max-queue", "256",
                             "--max-tokens", "256"], stdout=open(log, "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/ready", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not become ready")


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def one_request(client: httpx.AsyncClient, url: str, prompt: str, max_tokens: int, seed: int) -> dict:
    body = {"model": "tiny", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.8, "seed": seed,
            "stream": True, "stream_options": {"include_usage": True}, "ignore_eos": True}
    start = time.perf_counter()
    first = None
    tokens = 0
    done = False
    try:
        async with client.stream("POST", url + "/v1/completions", json=body) as r:
            if r.status_code != 200:
                return {"ok": False, "error": f"HTTP {r.status_code}"}
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    done = True
                    break
                chunk = json.loads(data)
                if chunk.get("usage"):
                    tokens = chunk["usage"]["completion_tokens"]
                elif first is None and chunk["choices"] and chunk["choices"][0]["text"]:
                    first = time.perf_counter()
    except (httpx.HTTPError, json.JSONDecodeError) as e:
        return {"ok": False, "error": repr(e)}
    end = time.perf_counter()
    ok = done and tokens == max_tokens
    return {"ok": ok, "ttft": (first or end) - start, "latency": end - start, "tokens": tokens,
            "error": None if ok else f"done={done} tokens={tokens}"}


async def load(url: str, prompts: list[str], requests: int, clients: int, max_tokens: int,
               phase_seconds: float) -> dict:
    """`clients` concurrent streams pull from a shared list of `requests` until done or out of time."""
    results: list[dict] = []
    next_index = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=httpx.Timeout(120.0), limits=limits) as client:
        start = time.perf_counter()

        async def worker():
            nonlocal next_index
            while next_index < requests and time.perf_counter() - start < phase_seconds:
                i = next_index
                next_index += 1
                results.append(await one_request(client, url, prompts[i % len(prompts)], max_tokens, seed=i))

        await asyncio.gather(*(worker() for _ in range(clients)))
        wall = time.perf_counter() - start
    good = [r for r in results if r["ok"]]
    ttft = sorted(r["ttft"] for r in good) or [float("nan")]
    return {"requests": len(results), "failures": len(results) - len(good),
            "ttft_p50_s": _pct(ttft, 50), "ttft_p95_s": _pct(ttft, 95),
            "latency_p50_s": _pct(sorted(r["latency"] for r in good) or [float("nan")], 50),
            "tokens": sum(r["tokens"] for r in good), "wall_s": wall,
            "tokens_per_s": sum(r["tokens"] for r in good) / wall,
            "errors": sorted({r["error"] for r in results if not r["ok"]})[:3]}


def _pct(values: list[float], p: float) -> float:
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=256, help="requests per phase (default 256)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent streaming clients (default 32)")
    parser.add_argument("--max-tokens", type=int, default=64, help="tokens generated per request (default 64)")
    parser.add_argument("--rounds", type=int, default=2, help="A/B rounds, alternating (default 2)")
    parser.add_argument("--phase-seconds", type=float, default=150.0, help="no new request after this (default 150)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        tmp = Path(tmp)
        run, prompts = build_tiny_run(tmp)
        configs = {"batched (--max-batch 32)": 32, "one at a time (--max-batch 1)": 1}
        phases: dict[str, list[dict]] = {name: [] for name in configs}
        for round_ in range(args.rounds):
            for name, max_batch in configs.items():
                proc, url = start_server(run, max_batch, tmp / f"server-{max_batch}.log")
                try:
                    # warm-up: a few requests so the first timed ones do not pay for lazy initialisation
                    asyncio.run(load(url, prompts, 4, 4, 8, 60))
                    result = asyncio.run(load(url, prompts, args.requests, args.clients, args.max_tokens,
                                              args.phase_seconds))
                finally:
                    stop_server(proc)
                print(f"round {round_ + 1} {name}: {json.dumps(result)}", flush=True)
                phases[name].append(result)

    rows = []
    for name, results in phases.items():
        rows.append({
            "server": name, "clients": args.clients, "requests": sum(r["requests"] for r in results),
            "failures": sum(r["failures"] for r in results),
            "ttft p50 (s)": statistics.median(r["ttft_p50_s"] for r in results),
            "ttft p95 (s)": statistics.median(r["ttft_p95_s"] for r in results),
            "latency p50 (s)": statistics.median(r["latency_p50_s"] for r in results),
            "tokens/s": statistics.median(r["tokens_per_s"] for r in results),
        })
    batched, single = rows[0]["tokens/s"], rows[1]["tokens/s"]
    ratio = batched / single
    rows.append({"server": "ratio batched / one at a time", "tokens/s": round(ratio, 2)})
    failures = sum(r["failures"] for r in rows if "failures" in r)
    notes = [
        f"`tiny` preset (4 layers, d_model 256, vocab {2048}), random weights, fp32 on CPU; each request streams "
        f"{args.max_tokens} tokens (ignore_eos, temperature 0.8, its own seed) from a 12-word TinyStories prompt.",
        f"{args.clients} concurrent streaming clients (httpx, one process) on the same machine as the server; "
        f"{args.rounds} alternating rounds per configuration; medians over rounds.",
        f"goal: batched >= 3x one-at-a-time tokens/s -> {ratio:.2f}x ({'met' if ratio >= 3 else 'NOT met'}); "
        f"failures: {failures} (goal 0).",
        "The CPU is shared with other engineers' work while this runs: absolute numbers are noisy, the ratio is the signal.",
    ]
    write_results("serve", "slm serve: continuous batching vs one request at a time (32 streaming clients)", rows, notes)
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
