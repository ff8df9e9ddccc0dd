"""The capstone's CPU recipe end to end, once: configs/capstone/cpu.yaml with the shared TinyStories piece
as its local text source (offline, the hub source is left out), timed, its report copied to
benchmarks/results/capstone/ (report.md, report.html, plots, serving.json, pipeline.json, timing.md).

    python benchmarks/bench_capstone.py            # ~30 minutes on 2 cores; nothing else should run meanwhile
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from capstone_screenshot import PROMPT, screenshot

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / ".cache" / "capstone"
RESULTS = HERE / "results" / "capstone"
TINYSTORIES = REPO.parent / "shared" / "data" / "tinystories" / "tinystories_train_head_2MiB.txt"
GOAL_MINUTES = 40


def main() -> int:
    if not TINYSTORIES.is_file():
        sys.exit(f"missing {TINYSTORIES} (the shared TinyStories piece beside the repository)")
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    command = [sys.executable, "-m", "slmkit", "pipeline", str(REPO / "configs" / "capstone" / "cpu.yaml"),
               f"data.sources.local.paths=[{TINYSTORIES}]", "data.sources.local.delimiter=<|endoftext|>"]
    load_before = os.getloadavg()[0]
    began = time.time()
    code = subprocess.run(command, cwd=WORK).returncode
    minutes = (time.time() - began) / 60
    if code != 0:
        print(f"the pipeline failed (exit {code}); see {WORK / 'runs' / 'capstone' / 'logs'}", file=sys.stderr)
        return code
    root = WORK / "runs" / "capstone"
    shutil.rmtree(RESULTS, ignore_errors=True)
    shutil.copytree(root / "report", RESULTS)
    for name in ("deploy/serving.json", "pipeline.json", "eval/results.json"):
        shutil.copyfile(root / name, RESULTS / Path(name).name.replace("results", "eval-results"))
    reply = screenshot(root, REPO / "docs" / "capstone-playground.png")
    shutil.copyfile(REPO / "docs" / "capstone-playground.png", RESULTS / "playground.png")
    stages = json.loads((root / "pipeline.json").read_text())["stages"]
    lines = ["# Capstone CPU run (configs/capstone/cpu.yaml)", "",
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(began))}, {platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} cores, load {load_before:.2f} -> {os.getloadavg()[0]:.2f}. Local text: the shared "
             "TinyStories 2 MiB piece; the hub source was left out (offline).", "",
             f"Wall time of `slm pipeline`: **{minutes:.1f} minutes** (goal: within {GOAL_MINUTES}).", "",
             "| stage | seconds |", "|---|---:|"]
    lines += [f"| {name} | {s['seconds']:.0f} |" for name, s in stages.items()]
    lines += ["", "The playground (docs/capstone-playground.png), greedy:", "", f"> user: {PROMPT}", ">",
              f"> model: {' '.join(reply.split())}"]
    (RESULTS / "timing.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
