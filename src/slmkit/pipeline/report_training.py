"""The report's training curves (one panel per training stage) and compute table (wall time, tokens,
FLOPs, MFU per stage), read from each run's metrics.jsonl and the pipeline's state."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from slmkit.pipeline.report_cards import model_config, read_json
from slmkit.pipeline.state import PipelineState
from slmkit.model.counting import flops_per_token
from slmkit.train.trainer import RUN_STATUS_FILE

TRAINING_STAGES = {"pretrain": "pretraining", "sft": "chat SFT", "dpo": "DPO"}
VAL_METRIC = {"pretrain": "val_bpb", "sft": "val_loss", "dpo": "val_accuracy"}


@dataclass
class RunMetrics:
    train: list[dict]
    evals: list[dict]

    @property
    def last_train(self) -> dict:
        return self.train[-1] if self.train else {}

    @property
    def last_eval(self) -> dict:
        return self.evals[-1] if self.evals else {}


def read_metrics(run_dir: Path) -> RunMetrics:
    """Train and eval records; a resumed run logs some steps twice, the later record wins."""
    path = run_dir / "metrics.jsonl"
    train: dict[int, dict] = {}
    evals: dict[int, dict] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                {"train": train, "eval": evals}.get(record.get("kind"), {})[record["step"]] = record
    return RunMetrics([train[s] for s in sorted(train)], [evals[s] for s in sorted(evals)])


def training_plot(plt, root: Path, out: Path) -> str | None:
    runs = {name: read_metrics(root / name) for name in TRAINING_STAGES}
    runs = {name: m for name, m in runs.items() if m.train}
    if not runs:
        return None
    fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 3.4), squeeze=False)
    for ax, (name, m) in zip(axes[0], runs.items()):
        ax.plot([r["step"] for r in m.train], [r["loss"] for r in m.train], label="training loss")
        metric = VAL_METRIC[name]
        points = [(r["step"], r[metric]) for r in m.evals if metric in r]
        if points:
            twin = ax.twinx() if metric != "val_loss" else ax
            twin.plot(*zip(*points), "o-", color="tab:orange", label=metric.replace("_", " "))
            twin.set_ylabel(metric.replace("_", " "))
        ax.set_title(TRAINING_STAGES[name])
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
    fig.tight_layout()
    fig.savefig(out / "training.png", dpi=110)
    plt.close(fig)
    return "training.png"


def training_section(root: Path, plots: dict[str, str]) -> list[tuple]:
    rows = []
    for name, title in TRAINING_STAGES.items():
        m = read_metrics(root / name)
        if not m.train:
            continue
        last = m.last_train
        status = read_json(root / name / RUN_STATUS_FILE)
        rows.append([title, f"{status.get('step', last['step']):,} ({status.get('status', '?')})",
                     f"{last.get('tokens', 0):,}", f"{m.train[0]['loss']:.4f}", f"{last['loss']:.4f}",
                     _held_out(m.evals[0] if m.evals else {}), _held_out(m.last_eval),
                     str(last.get("skipped_total", 0))])
    blocks: list[tuple] = [("h2", "Training"), ("table", ["stage", "steps (how it ended)", "tokens (last logged)",
                                                          "first loss", "last loss", "held-out at the start",
                                                          "held-out at the end", "skipped steps"], rows)]
    if "training" in plots:
        blocks.append(("img", plots["training"], "training loss per step and the held-out metric at each evaluation "
                                                 "(bits per byte, SFT loss on assistant tokens, DPO preference accuracy)"))
    return blocks


def _held_out(record: dict) -> str:
    return ", ".join(f"{k.replace('val_', '')} {record[k]:.4f}" for k in ("val_loss", "val_bpb", "val_accuracy")
                     if k in record)


def compute_section(root: Path, state: PipelineState) -> list[tuple]:
    cfg = model_config(root)
    per_token = flops_per_token(cfg) if cfg is not None else 0
    rows, total_s, total_flops = [], 0.0, 0.0
    for name, record in state.stages.items():
        m = read_metrics(root / name) if name in TRAINING_STAGES else None
        tokens = m.last_train.get("tokens", 0) if m else 0
        flops = per_token * tokens if name == "pretrain" else 0.0  # adapters train a fraction; not estimated
        mfu = [r["mfu"] for r in (m.train if m else []) if r.get("mfu")]
        total_s += record.seconds
        total_flops += flops
        rows.append([name, f"{record.seconds:.1f}", str(record.attempts), f"{tokens:,}" if tokens else "",
                     f"{flops:.3g}" if flops else "", f"{sum(mfu) / len(mfu):.1%}" if mfu else ""])
    rows.append(["**all stages**", f"{total_s:.1f}", "", "", f"{total_flops:.3g}" if total_flops else "", ""])
    return [("h2", "Compute"), ("table", ["stage", "wall seconds", "attempts", "tokens", "FLOPs", "mean MFU"], rows),
            ("p", "FLOPs: 6 x matrix parameters + attention per token (slmkit.model.counting) x tokens, for pretraining; "
                  "MFU as the Trainer logs it against the device's peak. Attempts above 1: the stage was interrupted "
                  "and resumed from its checkpoint.")]
