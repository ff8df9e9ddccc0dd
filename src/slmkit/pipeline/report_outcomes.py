"""The report's results: the headline table, evaluation and safety tables against the baselines, served
latency and throughput, and transcripts."""

from __future__ import annotations

from pathlib import Path

from slmkit.eval.evaluation_run import EvalResults
from slmkit.eval.report import task_tables
from slmkit.pipeline.report_cards import read_json

HEADLINE = [("text", "bits_per_byte", "bits per byte ↓"), ("story_requests", "accuracy", "story requests ↑"),
            ("story_cloze", "acc", "story cloze ↑"), ("safety", "unsafe_refusal_rate", "unsafe refused ↑"),
            ("safety", "over_refusal_rate", "safe refused ↓")]


def eval_results(root: Path) -> EvalResults | None:
    data = read_json(root / "eval" / "results.json")
    if not data:
        return None
    return EvalResults(models=data["models"], results=data["results"], baselines=data["baselines"], tasks=data["tasks"],
                       samples=data.get("samples", {}), breakdowns=data.get("breakdowns", {}),
                       settings=data.get("settings", {}))


def metric(per_task: dict, task: str, name: str) -> float | None:
    value = per_task.get(task, {}).get(name)
    return float(value) if isinstance(value, (int, float)) else None


def _size_mb(root: Path, path: str) -> str:
    files = list((root / path).glob("*.safetensors"))
    return f"{sum(f.stat().st_size for f in files) / 1e6:.2f}" if files else ""


def headline_section(root: Path, results: EvalResults) -> list[tuple]:
    columns = [c for c in HEADLINE if c[0] in results.tasks]
    rows = []
    for m in results.models:
        per_task = results.results.get(m["name"], {})
        cells = [_fmt(metric(per_task, task, name)) for task, name, _ in columns]
        rows.append([m["name"], m["path"], *cells, _size_mb(root, m["path"])])
    for name, per_task in results.baselines.items():
        rows.append([f"*{name}*", "baseline", *[_fmt(metric(per_task, t, n)) for t, n, _ in columns], ""])
    return [("h2", "Results"), ("table", ["model", "directory", *[c[2] for c in columns], "weights MB"], rows),
            ("p", "Bits per byte on the curated data's held-out split (lower is better); story requests: replies that a "
                  "rule checks (the requested name, object, an ending); safety: refusal of unsafe prompts and of safe "
                  "ones. Baselines are trained on the same training split and scored on the same documents. An adapter "
                  "directory's weights are the adapter alone.")]


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def evaluation_sections(results: EvalResults, plots: dict[str, str]) -> list[tuple]:
    tables = task_tables(results)
    blocks: list[tuple] = [("h2", "Evaluation against the baselines")]
    safety: list[tuple] = [("h2", "Safety")]
    for title, header, rows in tables:
        target = safety if title.startswith("safety") else blocks
        target += [("h3", title), ("table", header, rows)]
    for name, caption in (("bits_per_byte", "bits per byte of every model against the baselines"),
                          ("accuracy", "multiple-choice accuracy against chance")):
        if name in plots:
            blocks.append(("img", plots[name], caption))
    if "safety" in plots:
        safety.append(("img", plots["safety"], "refusal rate per category"))
    return blocks + (safety if len(safety) > 1 else [])


def serving_section(root: Path) -> list[tuple]:
    served = read_json(root / "deploy" / "serving.json")
    if not served:
        return []
    lt = served["load_test"]
    rows = [["model served", f"{served['model']} ({served['source']})"], ["ready after", f"{served['ready_s']:.1f} s"],
            ["requests x max tokens, concurrency", f"{lt['requests']} x {lt['max_tokens']}, {lt['concurrency']}"],
            ["latency p50 / p95", f"{lt['latency_p50_s']:.2f} s / {lt['latency_p95_s']:.2f} s"],
            ["throughput", f"{lt['tokens_per_s']:.0f} completion tokens/s, {lt['requests_per_s']:.2f} requests/s"],
            ["API key enforced", "yes" if served.get("api_key_enforced") else "no"]]
    return [("h2", "Serving"), ("p", "The deploy directory's server (serve-local.sh: the container's command on "
                                     "127.0.0.1), its health check, then a short load test over /v1/chat/completions."),
            ("table", ["", "value"], rows),
            ("pre", "docker compose -f deploy/compose.yaml up      # SLM_API_KEY must be set\n"
                    "sh deploy/serve-local.sh 8000                 # the same server without a container")]


def transcripts_section(root: Path) -> list[tuple]:
    served = read_json(root / "deploy" / "serving.json")
    blocks: list[tuple] = []
    for t in served.get("transcripts", []):
        blocks.append(("pre", f"user:  {t['prompt']}\nmodel: {t['reply']}"))
    return [("h2", "Sample transcripts (the served model, greedy)")] + blocks if blocks else []
