"""`run_pipeline(cfg)`: every stage in order, each skipped, resumed or run afresh.

    from slmkit.pipeline import read_pipeline_config, run_pipeline
    run_pipeline(read_pipeline_config("configs/capstone/cpu.yaml"))

A stage runs afresh when it never finished or its fingerprint changed (its directories are removed
first), resumes when it was interrupted with the same fingerprint (the training verbs continue from
their last checkpoint with train.resume=auto), and is reused when it finished with the same
fingerprint and its files are there. `start_from` re-runs one stage and everything after it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from slmkit.errors import ConfigError, SlmError
from slmkit.pipeline import actions
from slmkit.pipeline.config import PipelineConfig
from slmkit.pipeline.stage_configs import with_local_paths, write_stage_configs
from slmkit.pipeline.stage_process import StageInterrupted, last_lines, run_verb
from slmkit.pipeline.stages import STAGE_NAMES, STAGES, Stage
from slmkit.pipeline.state import PipelineState, fingerprint, local_file_stamps
from slmkit.train.trainer import RUN_STATUS_FILE

LOG_DIR = "logs"
LOCK_FILE = ".pipeline.lock"
DEFAULT_ESTIMATE_S = 60.0  # a stage with no time limit and no earlier run to go by


class StageFailed(SlmError):
    """A stage's verb exited with an error: the message names the stage and its log."""


@dataclass
class PlannedStage:
    stage: Stage
    fingerprint: str
    action: str  # reuse | resume | run


def plan_pipeline(cfg: PipelineConfig, state: PipelineState, recipes: dict, start_from: str | None = None) -> list[PlannedStage]:
    if start_from is not None and start_from not in STAGE_NAMES:
        raise ConfigError(f"--from {start_from}: no such stage (stages: {', '.join(STAGE_NAMES)})")
    prints: dict[str, str] = {}
    plan, forced = [], False
    for stage in STAGES:
        section = stage.section(cfg, recipes)
        extra = [local_file_stamps(recipes["data"])] if stage.name == "data" else []
        prints[stage.name] = fingerprint(stage.name, [section, *extra], [prints[n] for n in stage.needs])
        forced = forced or stage.name == start_from
        record = state.stages.get(stage.name)
        same = record is not None and record.fingerprint == prints[stage.name] and not forced
        if same and record.status == "done" and all((state.root / f).exists() for f in stage.done_when(cfg)):
            action = "reuse"
        elif same and record.status in ("running", "interrupted", "failed"):
            action = "resume"
        else:
            action = "run"
        plan.append(PlannedStage(stage, prints[stage.name], action))
    return plan


def run_pipeline(cfg: PipelineConfig, cwd: Path | None = None, start_from: str | None = None,
                 stop_after: str | None = None, echo: bool = True, log=print) -> PipelineState:
    """Run the pipeline under cfg.root; returns its state. Raises StageFailed naming the stage and its log,
    and KeyboardInterrupt after a Ctrl-C (the interrupted stage resumes on the next run)."""
    if stop_after is not None and stop_after not in STAGE_NAMES:
        raise ConfigError(f"--until {stop_after}: no such stage (stages: {', '.join(STAGE_NAMES)})")
    cwd = Path.cwd() if cwd is None else Path(cwd)
    root = (cwd / cfg.root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    with _exclusive(root):
        return _run_locked(cfg, root, cwd, start_from, stop_after, echo, log)


@contextlib.contextmanager
def _exclusive(root: Path):
    """One pipeline per run root at a time (the lock goes with the process, also when it is killed)."""
    with open(root / LOCK_FILE, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"another slm pipeline is running in {root}: wait for it, or stop it first") from None
        yield


def _run_locked(cfg: PipelineConfig, root: Path, cwd: Path, start_from, stop_after, echo: bool, log) -> PipelineState:
    cfg = with_local_paths(cfg, cwd)
    recipes = write_stage_configs(cfg, root, cwd)
    state = PipelineState.load(root)
    plan = plan_pipeline(cfg, state, recipes, start_from)
    if stop_after is not None:
        plan = plan[:STAGE_NAMES.index(stop_after) + 1]
    state.runs.append({"started": time.time(), "plan": {p.stage.name: p.action for p in plan}})
    state.save()
    started = time.time()
    for index, planned in enumerate(plan):
        log(_progress_line(cfg, index, plan, state, started))
        if planned.action == "reuse":
            state.record(planned.stage.name).reused = True
            state.save()
            continue
        _run_stage(cfg, root, planned, state, echo, log)
    state.runs[-1]["finished"] = time.time()
    state.save()
    log(f"pipeline finished in {_clock(time.time() - started)}: {root}")
    return state


def _run_stage(cfg: PipelineConfig, root: Path, planned: PlannedStage, state: PipelineState, echo: bool, log) -> None:
    stage, record = planned.stage, state.record(planned.stage.name)
    if planned.action == "run":
        for owned in stage.owns:
            shutil.rmtree(root / owned, ignore_errors=True)
        record.attempts, record.seconds = 0, 0.0
    log_path = root / LOG_DIR / f"{stage.name}.log"
    if planned.action == "run" and log_path.exists():
        log_path.unlink()
    record.fingerprint, record.status, record.reused, record.error = planned.fingerprint, "running", False, ""
    record.started, record.log = time.time(), str(log_path.relative_to(root))
    record.attempts += 1
    state.save()
    began = time.time()
    try:
        if stage.commands is not None:
            for argv in stage.commands(cfg):
                code = run_verb(argv, root, log_path, echo)
                if code != 0:
                    raise StageFailed(f"stage {stage.name} failed (slm {argv[0]} exited with {code}): see {log_path}"
                                      f" — {last_lines(log_path)}")
            if stage.run_dir is not None and _run_status(root / stage.run_dir) == "interrupted":
                raise StageInterrupted()  # the trainer was stopped (a signal sent to it alone) and saved
        else:
            actions.run_action(stage.in_process, cfg, root, log_path, log)
    except StageInterrupted:
        _finish(record, state, "interrupted", began)
        log(f"stage {stage.name} interrupted: run the same command again to continue from its last checkpoint")
        raise KeyboardInterrupt from None
    except KeyboardInterrupt:
        _finish(record, state, "interrupted", began)
        raise
    except Exception as e:  # noqa: BLE001  (any failure is the stage's: name it and keep the state true)
        _finish(record, state, "failed", began, str(e))
        if isinstance(e, StageFailed):
            raise
        detail = str(e) if isinstance(e, SlmError) else f"{type(e).__name__}: {e}"
        raise StageFailed(f"stage {stage.name} failed: {detail} (log: {log_path})") from e
    _finish(record, state, "done", began)
    log(f"  {stage.name} done in {_clock(time.time() - began)}")


def _run_status(run_dir: Path) -> str:
    path = run_dir / RUN_STATUS_FILE
    return json.loads(path.read_text()).get("status", "") if path.is_file() else "missing"


def _finish(record, state: PipelineState, status: str, began: float, error: str = "") -> None:
    record.status, record.error = status, error
    record.seconds += time.time() - began
    record.finished = time.time()
    state.save()


def _estimate(planned: PlannedStage, cfg_estimate: float | None, record) -> float:
    if planned.action == "reuse":
        return 0.0
    if record is not None and record.status == "done" and record.seconds:
        return record.seconds  # the last time it ran
    return cfg_estimate if cfg_estimate is not None else DEFAULT_ESTIMATE_S


def _progress_line(cfg: PipelineConfig, index: int, plan: list[PlannedStage], state: PipelineState,
                   started: float) -> str:
    """Which stage, how long the pipeline has run, and a rough time left: each remaining stage's last
    duration, else its time limit (train.max_minutes), else a minute."""
    planned = plan[index]
    remaining = sum(_estimate(p, p.stage.estimate_s(cfg), state.stages.get(p.stage.name)) for p in plan[index:])
    word = {"reuse": "reused (finished, unchanged)", "resume": "resuming", "run": "running"}[planned.action]
    return (f"[{index + 1}/{len(plan)}] {planned.stage.name}: {planned.stage.summary} — {word} · "
            f"elapsed {_clock(time.time() - started)} · about {_clock(remaining)} left")


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"
