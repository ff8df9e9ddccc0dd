"""train.precision=auto: bf16 only where the CPU multiplies it in hardware (AMX / AVX512-BF16 flags), else fp32;
explicit settings pass through; every entry point resolves it when it picks the device."""

import torch

from slmkit.train import precision
from slmkit.train.config import TrainConfig
from slmkit.train.distributed import setup_distributed

AMX = "processor : 0\nflags : fpu sse avx2 avx512f amx_bf16 amx_tile\n"
ZEN4 = "flags : fpu sse avx2 avx512f avx512_bf16\n"
AVX2 = "processor : 0\nflags : fpu sse avx2 fma\nbugs : sysret_ss_attrs\n"


def test_cpu_flags_decide():
    assert precision.cpu_has_native_bf16(AMX) and precision.cpu_has_native_bf16(ZEN4)
    assert not precision.cpu_has_native_bf16(AVX2) and not precision.cpu_has_native_bf16("")


def test_auto_resolves_on_cpu_and_explicit_values_pass(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda cpuinfo=None: False)
    assert precision.resolve_precision("auto", cpu) == "fp32"
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda cpuinfo=None: True)
    assert precision.resolve_precision("auto", cpu) == "bf16"
    assert precision.resolve_precision("fp32", cpu) == "fp32" and precision.resolve_precision("bf16", cpu) == "bf16"
    assert precision.resolve_precision("auto", torch.device("meta")) == "fp32"


def test_setup_resolves_the_config(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda cpuinfo=None: False)
    cfg = TrainConfig(precision="auto", device="cpu")
    setup_distributed(cfg)
    assert cfg.precision == "fp32"
