"""Run one `slm` verb as a child process: output to the stage's log (and the terminal), and the child
never outlives the pipeline.

Ctrl-C reaches the child too (same process group): a training verb saves a checkpoint and exits, and
the pipeline waits for it. SIGTERM to the pipeline is passed on to the child, with the same effect. If
the pipeline itself is killed (SIGKILL), Linux kills the child with it (PR_SET_PDEATHSIG), so a re-run
never races an orphan for the same checkpoint directory.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass


class StageInterrupted(Exception):
    """The user stopped the pipeline (Ctrl-C or SIGTERM) while a stage ran."""


def run_verb(argv: list[str], cwd: Path, log_path: Path, echo: bool) -> int:
    """`python -m slmkit ARGV` in `cwd`; returns its exit code. Raises StageInterrupted on Ctrl-C/SIGTERM
    (after the child has finished saving and exited)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    interrupted = False
    with open(log_path, "ab") as log:
        log.write(f"$ slm {' '.join(argv)}\n".encode())
        log.flush()
        child = subprocess.Popen([sys.executable, "-m", "slmkit", *argv], cwd=cwd, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)

        def forward_sigterm(signum, frame):
            nonlocal interrupted
            interrupted = True
            child.send_signal(signal.SIGTERM)

        previous = signal.signal(signal.SIGTERM, forward_sigterm)
        try:
            ctrl_c = _copy_output(child, log, echo)  # (not `interrupted |= ...`: the handler may set it meanwhile)
            child.wait()
            interrupted = interrupted or ctrl_c
        finally:
            signal.signal(signal.SIGTERM, previous)
    if interrupted:
        raise StageInterrupted()
    return child.returncode


def _copy_output(child: subprocess.Popen, log, echo: bool) -> bool:
    """Copy the child's output until it ends; True when Ctrl-C arrived meanwhile (the child got it too)."""
    interrupted = False
    out = sys.stdout.buffer if echo else None
    while True:
        try:
            chunk = os.read(child.stdout.fileno(), 1 << 14)
        except KeyboardInterrupt:
            interrupted = True  # keep copying: the child is saving a checkpoint and will exit
            continue
        if not chunk:
            return interrupted
        log.write(chunk)
        log.flush()
        if out is not None:
            out.write(chunk)
            out.flush()


def last_lines(log_path: Path, count: int = 3) -> str:
    """The end of a log, progress-bar redraws removed, for an error message."""
    if not log_path.is_file():
        return ""
    tail = log_path.read_bytes()[-8192:].decode("utf-8", errors="replace").replace("\r", "\n")
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return " | ".join(lines[-count:])
