"""`slm pipeline RECIPE --status`: each stage's state, what a run would do with it, and its log."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

from slmkit.pipeline.config import PipelineConfig
from slmkit.pipeline.runner import plan_pipeline
from slmkit.pipeline.stage_configs import with_local_paths, write_stage_configs
from slmkit.pipeline.state import PipelineState

WOULD = {"reuse": "reuse", "resume": "resume", "run": "run"}


def status_rows(cfg: PipelineConfig, start_from: str | None = None, cwd: Path | None = None) -> list[list[str]]:
    cwd = Path.cwd() if cwd is None else cwd
    root = (cwd / cfg.root).resolve()
    state = PipelineState.load(root)
    cfg = with_local_paths(cfg, cwd)
    with tempfile.TemporaryDirectory() as scratch:  # check every section as a run would, writing nothing
        recipes = write_stage_configs(cfg, Path(scratch), cwd)
    rows = []
    for planned in plan_pipeline(cfg, state, recipes, start_from):
        record = state.stages.get(planned.stage.name)
        finished = dt.datetime.fromtimestamp(record.finished).strftime("%Y-%m-%d %H:%M") if record and record.finished \
            else ""
        rows.append([planned.stage.name, record.status if record else "pending", WOULD[planned.action],
                     f"{record.seconds:.0f} s" if record and record.seconds else "", finished,
                     str(root / record.log) if record and record.log else ""])
    return rows


def print_status(cfg: PipelineConfig, start_from: str | None = None) -> None:
    header = ["stage", "state", "next run", "took", "finished", "log"]
    rows = [header] + status_rows(cfg, start_from)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
