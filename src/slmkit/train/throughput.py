"""Model FLOPs utilisation: achieved training FLOPs over the device's peak.

    peak = peak_flops(device, precision)          # per device; None when unknown
    mfu = flops_per_token * tokens_per_s / (peak * world_size)

Training FLOPs per token come from `slmkit.model.flops_per_token` (6N + 12·L·H·Q·T, as nanoGPT and
PaLM count them). GPU peaks are the vendors' dense (no sparsity) figures; the CPU peak is measured
once with a large matmul, so CPU MFU reads "share of what this CPU's matmul kernel achieves".
Override with `train.peak_flops`.
"""

from __future__ import annotations

import functools
import time

import torch

# name fragment (lower case) -> (bf16/fp16 dense, tf32 dense, fp32) FLOP/s per device
GPU_PEAKS = {
    "h200": (989e12, 494e12, 67e12),
    "h100 pcie": (756e12, 378e12, 51e12),
    "h100 nvl": (835e12, 418e12, 60e12),
    "h100": (989e12, 494e12, 67e12),  # SXM
    "gh200": (989e12, 494e12, 67e12),
    "b200": (2250e12, 1100e12, 80e12),
    "a100": (312e12, 156e12, 19.5e12),
    "a10g": (125e12, 62.5e12, 31.2e12),
    "a10": (125e12, 62.5e12, 31.2e12),
    "l40s": (362e12, 183e12, 91.6e12),
    "l4": (121e12, 60e12, 30e12),
    "rtx 4090": (165e12, 82.6e12, 82.6e12),
    "rtx 3090": (71e12, 35.6e12, 35.6e12),
    "v100": (125e12, 15.7e12, 15.7e12),
    "t4": (65e12, 8.1e12, 8.1e12),
}


def gpu_peak(name: str, precision: str, tf32: bool = True) -> float | None:
    lower = name.lower()
    for key, (half, tf32_peak, fp32) in GPU_PEAKS.items():
        if key in lower:
            if precision in ("bf16", "fp16"):
                return half
            return tf32_peak if tf32 else fp32
    return None


@functools.lru_cache(maxsize=4)
def measured_cpu_peak(precision: str, size: int = 1024, repeats: int = 20) -> float:
    """FLOP/s of a square matmul on this CPU with torch's threads (bf16 uses AMX/AVX512-BF16 where present).

    The fastest of a few runs: on a shared machine the slow ones measure the neighbours, not the CPU."""
    dtype = torch.bfloat16 if precision in ("bf16", "fp16") else torch.float32
    generator = torch.Generator().manual_seed(0)  # never the global RNG: training's stream stays untouched
    a = torch.randn(size, size, generator=generator).to(dtype)
    b = torch.randn(size, size, generator=generator).to(dtype)
    a @ b  # warm up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def peak_flops(device: torch.device, precision: str, tf32: bool = True, override: float | None = None) -> float | None:
    if override:
        return float(override)
    if device.type == "cuda":
        return gpu_peak(torch.cuda.get_device_name(device), precision, tf32)
    if device.type == "cpu":
        return measured_cpu_peak(precision)
    return None


def memory_in_use(device: torch.device) -> float:
    """Bytes: peak allocated on CUDA, else this process's peak resident set size."""
    if device.type == "cuda":
        return float(torch.cuda.max_memory_allocated(device))
    try:
        import resource

        return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # KiB on Linux
    except (ImportError, OSError):
        return 0.0
