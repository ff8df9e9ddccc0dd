"""Shared helpers for benchmarks: machine description, A/B timing, result files.

Benchmarks compare slmkit with a peer in the same run (alternating, several repetitions,
median) and report ratios; absolute times on a shared CPU are noise, ratios are signal.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def machine() -> dict:
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    try:
        model = [line for line in open("/proc/cpuinfo") if line.startswith("model name")]
        if model:
            info["cpu_model"] = model[0].split(":", 1)[1].strip()
    except OSError:
        pass
    try:
        info["commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        pass
    return info


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def ab_median(fns: dict, repeats: int = 3) -> dict[str, float]:
    """Run each callable `repeats` times, alternating between them; median seconds per name."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(timed(fn))
    return {name: statistics.median(ts) for name, ts in times.items()}


def write_results(name: str, title: str, rows: list[dict], notes: list[str] = ()) -> Path:
    """Write benchmarks/results/NAME.json and NAME.md (a table of `rows`), dated, naming the machine."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    info = machine()
    (RESULTS / f"{name}.json").write_text(json.dumps({"date": when, "machine": info, "rows": rows}, indent=2))
    columns = list(dict.fromkeys(k for row in rows for k in row))
    lines = [f"# {title}", "", f"{when} — {info.get('cpu_model', info['processor'])}, {info['cpus']} cores, "
             f"Python {info['python']}, torch {info.get('torch', '-')}, commit {info.get('commit', '?')}", ""]
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("|" + "---|" * len(columns))
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c, "")) for c in columns) + " |")
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return RESULTS / f"{name}.md"


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)
