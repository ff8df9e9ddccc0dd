"""Experiment tracking in the run directory: metrics.jsonl, TensorBoard, W&B, run_info.json, curves.png.

Only rank 0 creates a `Tracker`; every record is one JSON line ({"step", "kind", ...metrics}) so a
crashed run keeps everything it logged. TensorBoard events go to RUN/tensorboard when tensorboard is
installed; Weights & Biases is imported only when `train.wandb_project` is set.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

import slmkit
from slmkit.errors import ConfigError

METRICS = "metrics.jsonl"


class Tracker:
    def __init__(self, run_dir: Path, train_cfg, run_config_dict: dict, resumed: bool):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / METRICS
        self.file = open(self.path, "a", encoding="utf-8")
        self.tb = None
        self.wandb = None
        if train_cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.run_dir / "tensorboard"))
            except ImportError:
                self.tb = None  # tensorboard not installed: JSONL only
        if train_cfg.wandb_project:
            try:
                import wandb
            except ImportError:
                raise ConfigError("train.wandb_project is set but wandb is not installed: pip install wandb") from None
            self.wandb = wandb.init(project=train_cfg.wandb_project, name=train_cfg.wandb_run_name,
                                    dir=str(self.run_dir), config=run_config_dict, resume="allow" if resumed else None)

    def log(self, step: int, kind: str, metrics: dict) -> None:
        record = {"step": step, "kind": kind, "time": round(time.time(), 3), **metrics}
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if self.tb is not None:
            for key, value in numbers.items():
                self.tb.add_scalar(f"{kind}/{key}", value, step)
        if self.wandb is not None:
            self.wandb.log({f"{kind}/{k}": v for k, v in numbers.items()}, step=step)

    def log_text(self, step: int, tag: str, text: str) -> None:
        if self.tb is not None:
            self.tb.add_text(tag, text, step)

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut off by a crash
    return records


def plot_curves(run_dir: Path) -> Path | None:
    """loss (train and validation) and learning rate against step, and for DPO runs the rewards and margins,
    as RUN/curves.png; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    records = read_metrics(run_dir)
    # a resumed run appends: the last record for each step wins
    train = {r["step"]: r for r in records if r.get("kind") == "train" and "loss" in r}
    val = {r["step"]: r for r in records if r.get("kind") == "eval" and any(k.startswith("val_") for k in r)}
    if not train:
        return None
    steps = sorted(train)
    last = train[steps[-1]]
    preference = "rewards/margins" in last or "reward" in last  # DPO and reward models, or RL
    fig, axes = plt.subplots(1, 3 if preference else 2, figsize=(16.5 if preference else 11, 4))
    ax_loss, ax_lr = axes[0], axes[1]
    ax_loss.plot(steps, [train[s]["loss"] for s in steps], label="train", linewidth=1)
    vs = sorted(s for s in val if "val_loss" in val[s])
    if vs:
        ax_loss.plot(vs, [val[s]["val_loss"] for s in vs], "o-", label="validation")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss (nats/token)")
    ax_loss.set_title("loss")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    ax_lr.plot(steps, [train[s].get("lr", 0.0) for s in steps])
    ax_lr.set_xlabel("step")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_title("learning rate")
    ax_lr.grid(alpha=0.3)
    if preference:
        _plot_rewards(axes[2], train, val)
    fig.tight_layout()
    path = Path(run_dir) / "curves.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_rewards(ax, train: dict, val: dict) -> None:
    """The third panel: DPO's and reward models' rewards of chosen and rejected and their margin (held-out
    margin beside), or RL's mean reward and KL to the reference (held-out reward beside)."""
    steps = sorted(train)
    rl = "reward" in train[steps[-1]]
    keys = ("reward", "kl") if rl else ("rewards/chosen", "rewards/rejected", "rewards/margins")
    for key in keys:
        if any(key in train[s] for s in steps):
            ax.plot(steps, [train[s].get(key, 0.0) for s in steps], label=key.removeprefix("rewards/"), linewidth=1)
    held_key = "val_reward" if rl else "val_margin"
    held = sorted(s for s in val if held_key in val[s])
    if held:
        ax.plot(held, [val[s][held_key] for s in held], "o-", label=f"held-out {held_key.removeprefix('val_')}")
    ax.set_xlabel("step")
    ax.set_ylabel("reward" if rl else "beta x log-ratio")
    ax.set_title("reward and KL" if rl else "rewards")
    ax.legend()
    ax.grid(alpha=0.3)


def run_info(device: torch.device, world_size: int, extra: dict | None = None) -> dict:
    """What the run ran on: git commit, package versions, hardware."""
    info = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": " ".join(sys.argv),
        "git_commit": _git(["rev-parse", "HEAD"]),
        "git_dirty": bool(_git(["status", "--porcelain", "--untracked-files=no"])),
        "versions": {"slmkit": slmkit.__version__, "python": platform.python_version(), "torch": torch.__version__,
                     "numpy": _version("numpy"), "transformers": _version("transformers")},
        "hardware": {"platform": platform.platform(), "cpu": _cpu_model(), "cpu_count": os.cpu_count(),
                     "torch_threads": torch.get_num_threads(), "device": str(device), "world_size": world_size},
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["hardware"].update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1),
                                cuda=torch.version.cuda, gpu_count=torch.cuda.device_count())
    info.update(extra or {})
    return info


def _git(args: list[str]) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return None


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
