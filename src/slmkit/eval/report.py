"""An evaluation report directory: results.json, report.md, report.html and PNG plots.

    write_report(results, "reports/compare")   # -> reports/compare/{results.json, report.md, report.html, *.png}

Tables: one per task, a row per model and per baseline, a column per metric (accuracies with their standard
error); generation tasks add a breakdown table (safety by category, story requests by kind). Plots: bits
per byte of every model against the baselines, each multiple-choice task's accuracy per model against
chance, and the safety refusal rate per category per model. Examples: a few transcripts per task, and
every judge reply the parser could not read. The directory is written under a temporary name and renamed into place, so a
failed run never leaves half a report.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

from slmkit.errors import DataError
from slmkit.eval.evaluation_run import HIGHER_IS_BETTER, EvalResults
from slmkit.eval.text_eval import TEXT_TASK
from slmkit.fileio import atomic_directory

SHOWN_METRICS = ("bits_per_byte", "word_perplexity", "byte_perplexity", "perplexity", "acc", "acc_norm", "acc_bytes")
SAMPLES_SHOWN = 3
BREAKDOWN_ROW = {"safety": "category", "story_requests": "kind"}  # what a breakdown row is, per task
EXAMPLE_CHARS = 160  # prompts and replies are cut to this in the examples


def require_plotting() -> None:
    """Fail before a long run, not after it, when the plotting library is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise DataError("--report draws plots with matplotlib: pip install 'slmkit[eval]'") from None


def write_report(results: EvalResults, out_dir: str | os.PathLike) -> Path:
    require_plotting()
    with atomic_directory(out_dir) as tmp:
        (tmp / "results.json").write_text(json.dumps(results.to_json(), indent=1, default=float) + "\n")
        plots = _plots(results, tmp)
        sections = task_tables(results)
        (tmp / "report.md").write_text(_markdown(results, sections, plots))
        (tmp / "report.html").write_text(_html(results, sections, plots))
    return Path(out_dir)


def task_tables(results: EvalResults) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) per task, models first then baselines; a breakdown table after a task that has one."""
    sections = []
    for task, info in results.tasks.items():
        metrics = _task_metrics(results, task, info["kind"])
        header = ["model"] + [_heading(m) for m in metrics]
        rows = [[name] + [_cell(per_task.get(task, {}), m) for m in metrics]
                for name, per_task in results.results.items() if task in per_task]
        rows += [[f"*{name}*"] + [_cell(per_task.get(task, {}), m) for m in metrics]
                 for name, per_task in results.baselines.items() if task in per_task]
        title = f"{task} ({info['kind']}, {info['documents']} documents"
        title += f", {info['num_fewshot']}-shot" if info.get("num_fewshot") else ""
        title += f", against {info['against']})" if info.get("against") else ")"
        sections.append((title, header, rows))
        sections += _breakdown_table(results, task)
    return sections


def _task_metrics(results: EvalResults, task: str, kind: str) -> list[str]:
    if kind != "generation":
        return [m for m in SHOWN_METRICS if any(m in r.get(task, {}) for r in results.results.values())]
    names: list[str] = []
    for per_task in results.results.values():
        names += [m for m in per_task.get(task, {}) if not m.endswith("_stderr") and m not in names]
    return names


def _breakdown_table(results: EvalResults, task: str) -> list[tuple[str, list[str], list[list[str]]]]:
    per_model = {model: tasks[task] for model, tasks in results.breakdowns.items() if task in tasks}
    if not per_model:
        return []
    metrics: list[str] = []
    for rows in per_model.values():
        for values in rows.values():
            metrics += [m for m in values if m not in metrics]
    label = BREAKDOWN_ROW.get(task, "group")
    rows = [[model, row] + [_cell(values, m) for m in metrics]
            for model, groups in per_model.items() for row, values in groups.items()]
    return [(f"{task} by {label}", ["model", label] + [_heading(m) for m in metrics], rows)]


def _heading(metric: str) -> str:
    """The metric with ↑ (higher is better) or ↓; counts and shares without a better side have neither."""
    better = True if metric.endswith("_accuracy") else HIGHER_IS_BETTER.get(metric)  # story_request_accuracy
    return metric if better is None else f"{metric} {'↑' if better else '↓'}"


def _cell(metrics: dict, name: str) -> str:
    if name not in metrics:
        return ""
    value = metrics[name]
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    stderr = metrics.get(f"{name}_stderr")
    text = f"{value:.4f}" if abs(value) < 1000 else f"{value:.4g}"
    return f"{text} ± {stderr:.4f}" if stderr else text


def _markdown(results: EvalResults, sections, plots: list[str]) -> str:
    lines = ["# Evaluation report", "", f"slmkit {results.to_json()['slmkit_version']}", "", "## Models", "",
             "| model | path | parameters |", "|---|---|---:|"]
    lines += [f"| {m['name']} | {m['path']} | {m['parameters'] or ''} |" for m in results.models]
    for title, header, rows in sections:
        lines += ["", f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    lines += ["", "## Examples", ""] + _example_lines(results)
    return "\n".join(lines) + "\n"


def _example_lines(results: EvalResults) -> list[str]:
    lines = []
    for model, per_task in results.samples.items():
        for task, samples in per_task.items():
            shown = [s for s in samples if "reply" in s and s.get("parsed") is False]  # every unread judge reply
            shown = samples[:SAMPLES_SHOWN] + [s for s in shown if s not in samples[:SAMPLES_SHOWN]]
            lines += [_example_line(model, task, s) for s in shown]
    return [line for line in lines if line] or ["(none)"]


def _example_line(model: str, task: str, s: dict) -> str:
    if "continuations" in s:
        mark = "right" if s["pick"] == s["gold"] else "wrong"
        return (f"- **{model} / {task}** ({mark}): …{s['context'][-120:]!r} → picked "
                f"{s['continuations'][s['pick']]!r}, gold {s['continuations'][s['gold']]!r}")
    if "reply" not in s:
        return ""
    tags = [s["category"]] if "category" in s else []
    tags += ["refused"] if s.get("refusal") else []
    tags += ["ok"] if s.get("ok") else ["not ok"] if s.get("ok") is False else []
    tags += ["judge reply unparsed"] if s.get("parsed") is False else []
    line = (f"- **{model} / {task}**{' (' + ', '.join(tags) + ')' if tags else ''}: "
            f"{_cut(s['prompt'])!r} → {_cut(s['reply'])!r}")
    if s.get("parsed") is False:
        line += f"; judge said {_cut(s.get('judge', ''))!r}"
    return line


def _cut(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= EXAMPLE_CHARS else text[:EXAMPLE_CHARS] + "…"


def _html(results: EvalResults, sections, plots: list[str]) -> str:
    e = html.escape
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>Evaluation report</title><style>",
             "body{font-family:sans-serif;max-width:1000px;margin:2em auto}table{border-collapse:collapse}",
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}",
             "</style></head><body><h1>Evaluation report</h1><h2>Models</h2><table><tr><th>model</th><th>path</th>",
             "<th>parameters</th></tr>"]
    parts += [f"<tr><td>{e(m['name'])}</td><td>{e(m['path'])}</td><td>{m['parameters'] or ''}</td></tr>"
              for m in results.models]
    parts.append("</table>")
    for title, header, rows in sections:
        parts.append(f"<h2>{e(title)}</h2><table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{e(c.strip('*'))}</td>" for c in r) + "</tr>" for r in rows]
        parts.append("</table>")
    parts += ["<h2>Plots</h2>"] + [f"<img src='{e(p)}' alt='{e(p)}' style='max-width:100%'>" for p in plots]
    parts += ["<h2>Examples</h2><ul>"] + [f"<li>{e(line[2:])}</li>" for line in _example_lines(results)]
    parts.append("</ul></body></html>")
    return "\n".join(parts) + "\n"


def _plots(results: EvalResults, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    if any(TEXT_TASK in r for r in results.results.values()):
        names, values = [], []
        for group in (results.results, results.baselines):
            for name, per_task in group.items():
                if "bits_per_byte" in per_task.get(TEXT_TASK, {}):
                    names.append(name)
                    values.append(per_task[TEXT_TASK]["bits_per_byte"])
        fig, ax = plt.subplots(figsize=(max(4, len(names) * 1.2), 3.5))
        colors = ["tab:blue"] * len(results.results) + ["tab:gray"] * (len(names) - len(results.results))
        ax.bar(names, values, color=colors)
        ax.set_ylabel("bits per byte (lower is better)")
        ax.set_title("held-out text: models and baselines")
        ax.tick_params(axis="x", rotation=30)
        fig.tight_layout()
        fig.savefig(out / "bits_per_byte.png", dpi=110)
        plt.close(fig)
        written.append("bits_per_byte.png")
    choice_tasks = [t for t, info in results.tasks.items() if info["kind"] == "multiple_choice"]
    if choice_tasks:
        written.append(_accuracy_plot(plt, results, choice_tasks, out))
    if any("safety" in tasks for tasks in results.breakdowns.values()):
        written.append(_safety_plot(plt, results, out))
    return written


def _accuracy_plot(plt, results: EvalResults, tasks: list[str], out: Path) -> str:
    series = {model: [results.results[model].get(t, {}).get("acc", 0.0) for t in tasks] for model in results.results}
    chance = results.baselines.get("chance", {})
    return _grouped_bars(plt, tasks, series, out / "accuracy.png", "accuracy",
                         chance=[chance[t]["acc"] if t in chance else None for t in tasks])


def _safety_plot(plt, results: EvalResults, out: Path) -> str:
    """Refusal rate per safety category per model: high is good on the unsafe categories, low on over_refusal."""
    per_model = {model: tasks["safety"] for model, tasks in results.breakdowns.items() if "safety" in tasks}
    categories = list(dict.fromkeys(c for groups in per_model.values() for c in groups))
    series = {model: [groups.get(c, {}).get("refusal_rate", 0.0) for c in categories]
              for model, groups in per_model.items()}
    return _grouped_bars(plt, categories, series, out / "safety.png", "refusal rate",
                         title="safety: refusals (higher is better, except over_refusal)")


def _grouped_bars(plt, groups: list[str], series: dict[str, list[float]], path: Path, ylabel: str,
                  title: str | None = None, chance: list[float | None] | None = None) -> str:
    """One bar per model in each group (values in [0, 1]), with dashed chance lines where given."""
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(max(5, len(groups) * 1.5), 3.8))
    for i, (name, values) in enumerate(series.items()):
        ax.bar([k + i * width for k in range(len(groups))], values, width, label=name)
    for k, value in enumerate(chance or []):
        if value is not None:
            ax.hlines(value, k - width / 2, k + width * (len(series) - 0.5), colors="black", linestyles="dashed",
                      label="chance" if k == 0 else None)
    ax.set_xticks([k + width * (len(series) - 1) / 2 for k in range(len(groups))], groups, rotation=20)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name
