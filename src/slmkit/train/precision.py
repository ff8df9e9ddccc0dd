"""Numeric precision: autocast contexts over fp32 master weights, the fp16 loss scaler, TF32, memory cap.

Weights, gradients and optimizer moments stay float32; only the forward/backward matmuls run in
bf16/fp16 inside autocast (the book's pure-bf16 weights lose small updates to rounding). fp16 needs a
`GradScaler` to keep small gradients from flushing to zero; bf16 has fp32's exponent range and does not.
"""

from __future__ import annotations

import contextlib

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


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
