"""ROOT/report/: report.md and report.html (the same blocks) with their plots.

Sections: summary, results (every model and baseline on the headline metrics), data card, model card,
training curves, compute, evaluation tables and plots, safety, serving (latency and throughput of the
deployed server), sample transcripts, post-mortem. Everything is read from the files the stages wrote.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from slmkit import __version__
from slmkit.eval.report import require_plotting
from slmkit.fileio import atomic_directory
from slmkit.pipeline.config import PipelineConfig
from slmkit.pipeline.report_cards import data_card, data_plot, model_card, read_json
from slmkit.pipeline.report_outcomes import (eval_results, evaluation_sections, headline_section, serving_section,
                                              transcripts_section)
from slmkit.pipeline.report_postmortem import postmortem
from slmkit.pipeline.report_render import to_html, to_markdown
from slmkit.pipeline.report_training import compute_section, training_plot, training_section
from slmkit.pipeline.state import PipelineState

EVAL_PLOTS = ("bits_per_byte", "accuracy", "safety")


def write_pipeline_report(cfg: PipelineConfig, root: Path) -> list[Path]:
    require_plotting()
    state = PipelineState.load(root)
    with atomic_directory(root / "report") as tmp:
        plots = _plots(root, tmp)
        blocks = report_blocks(cfg, root, state, plots)
        (tmp / "report.md").write_text(to_markdown(blocks), encoding="utf-8")
        (tmp / "report.html").write_text(to_html(blocks, "slmkit capstone report"), encoding="utf-8")
    return [root / "report" / "report.md", root / "report" / "report.html"]


def _plots(root: Path, out: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = {}
    for name, draw in (("data", data_plot), ("training", training_plot)):
        made = draw(plt, root, out)
        if made:
            plots[name] = made
    for name in EVAL_PLOTS:
        source = root / "eval" / f"{name}.png"
        if source.is_file():
            shutil.copyfile(source, out / f"eval-{name}.png")
            plots[name] = f"eval-{name}.png"
    return plots


def report_blocks(cfg: PipelineConfig, root: Path, state: PipelineState, plots: dict[str, str]) -> list[tuple]:
    results = eval_results(root)
    blocks: list[tuple] = [("h1", "slmkit capstone report"), ("p", _summary(cfg, root, state))]
    if results is not None:
        blocks += headline_section(root, results)
    blocks += data_card(root, plots) + model_card(root) + training_section(root, plots) + compute_section(root, state)
    if results is not None:
        blocks += evaluation_sections(results, plots)
    blocks += serving_section(root) + transcripts_section(root) + postmortem(root, state, results)
    return blocks


def _summary(cfg: PipelineConfig, root: Path, state: PipelineState) -> str:
    info = read_json(root / "pretrain" / "run_info.json")
    hardware = info.get("hardware", {})
    total = sum(r.seconds for r in state.stages.values())
    commit = info.get("git_commit", "")[:10] + (" (with local changes)" if info.get("git_dirty") else "")
    return (f"Run root `{root.name}`, written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by slmkit "
            f"{__version__}{' at commit ' + commit if commit else ''}. Hardware: {hardware.get('cpu', '?')}, "
            f"{hardware.get('cpu_count', '?')} CPU cores, device {hardware.get('device', '?')}. Stages: "
            f"{', '.join(state.stages)}; {total / 60:.1f} minutes of stage time in all.")
