"""Numeric precision: autocast contexts over fp32 master weights, the fp16 loss scaler, TF32, memory cap.

Weights, gradients and optimizer moments stay float32; only the forward/backward matmuls run in
bf16/fp16 inside autocast (the book's pure-bf16 weights lose small updates to rounding). fp16 needs a
`GradScaler` to keep small gradients from flushing to zero; bf16 has fp32's exponent range and does not.

`precision: auto` (the recipes' setting) means bf16 where the hardware computes it natively — a CUDA GPU that
supports it, or a CPU with AMX or AVX512-BF16 (recent Xeons, Zen 4 EPYCs) — and fp32 elsewhere: on a CPU
without them, bf16 autocast is emulated and measured 6.6x slower than fp32 for the demo model (an AVX2 EPYC).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
NATIVE_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU multiplies bf16 in hardware (its /proc/cpuinfo flags; False where there is none)."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text(errors="replace") if path.is_file() else ""
    flags = {f for line in cpuinfo.splitlines() if line.startswith("flags") for f in line.split(":", 1)[-1].split()}
    return any(f in flags for f in NATIVE_BF16_CPU_FLAGS)


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto` -> "bf16" on hardware with native bf16, else "fp32"; any other value unchanged."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    return "fp32"


def autocast(precision: str, device: torch.device, under_fsdp: bool = False):
    """The forward context; under FSDP2 the mixed-precision policy casts instead, so none is needed."""
    if precision == "fp32" or under_fsdp:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])


def grad_scaler(precision: str, device: torch.device):
    """A GradScaler for fp16, else None."""
    if precision != "fp16":
        return None
    return torch.amp.GradScaler(device.type)


def configure_device(train_cfg, device: torch.device) -> None:
    """TF32 matmuls and the memory-fraction cap on CUDA (the notebook's "memory locking")."""
    if device.type != "cuda":
        return
    torch.backends.cuda.matmul.allow_tf32 = train_cfg.tf32
    torch.backends.cudnn.allow_tf32 = train_cfg.tf32
    if train_cfg.tf32:
        torch.set_float32_matmul_precision("high")
    if train_cfg.gpu_memory_fraction is not None:
        torch.cuda.set_per_process_memory_fraction(train_cfg.gpu_memory_fraction, device)
