"""What a pipeline remembers between runs: ROOT/pipeline.json, one entry per stage.

A stage's fingerprint hashes what decides its output: its own section (the verb's recipe as the
pipeline writes it), the fingerprints of the stages it reads, and for local data files their size and
modification time. A finished stage with an unchanged fingerprint is reused; an unfinished one
(interrupted, killed, failed) with an unchanged fingerprint resumes; any other runs afresh.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from slmkit.errors import ConfigError
from slmkit.fileio import write_json_atomic

STATE_FILE = "pipeline.json"
STATE_VERSION = 1


def fingerprint(name: str, section: Any, upstream: list[str]) -> str:
    payload = json.dumps({"stage": name, "section": section, "upstream": upstream}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def local_file_stamps(data_section: dict) -> list[list]:
    """[path, size, mtime_ns] of every local file the data section reads (globs expanded), so an edited
    text file re-runs the data stage and everything after it."""
    stamps = []
    for source in (data_section.get("sources") or {}).values():
        for pattern in (source.get("paths") or []) if isinstance(source, dict) else []:
            matches = sorted(Path("/").glob(pattern.lstrip("/"))) if any(c in pattern for c in "*?[") else [Path(pattern)]
            for path in matches:
                stat = path.stat() if path.exists() else None
                stamps.append([str(path), stat.st_size if stat else None, stat.st_mtime_ns if stat else None])
    return stamps


@dataclass
class StageRecord:
    fingerprint: str = ""
    status: str = "pending"  # running | done | failed | interrupted
    started: float | None = None
    finished: float | None = None
    seconds: float = 0.0  # wall time of the run that finished it (all its attempts together)
    attempts: int = 0  # how many times it was started for this fingerprint (resumes count)
    reused: bool = False  # the last pipeline run reused it as it was
    log: str = ""
    error: str = ""


@dataclass
class PipelineState:
    root: Path
    stages: dict[str, StageRecord] = field(default_factory=dict)
    runs: list[dict] = field(default_factory=list)  # one entry per `slm pipeline` invocation

    @classmethod
    def load(cls, root: Path) -> "PipelineState":
        path = root / STATE_FILE
        if not path.is_file():
            return cls(root)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            stages = {name: StageRecord(**record) for name, record in data["stages"].items()}
        except (ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"{path} is not a pipeline state file ({e}); delete it to start the pipeline over") from None
        return cls(root, stages, data.get("runs", []))

    def record(self, name: str) -> StageRecord:
        return self.stages.setdefault(name, StageRecord())

    def save(self) -> None:
        data = {"version": STATE_VERSION, "saved": time.time(),
                "stages": {name: asdict(r) for name, r in self.stages.items()}, "runs": self.runs}
        write_json_atomic(self.root / STATE_FILE, data)
