"""Peak-FLOPs lookup for MFU: device names as torch reports them -> the vendors' dense datasheet figures."""

import pytest
import torch

from slmkit.train.throughput import gpu_peak, peak_flops


@pytest.mark.parametrize("name, precision, expected", [
    ("NVIDIA H100 80GB HBM3", "bf16", 989e12),  # SXM
    ("NVIDIA H100 PCIe", "bf16", 756e12),  # must not read as the SXM part
    ("NVIDIA H100 NVL", "bf16", 835e12),
    ("NVIDIA H200", "fp16", 989e12),
    ("NVIDIA A100-SXM4-80GB", "bf16", 312e12),
    ("NVIDIA A10G", "bf16", 125e12),
    ("NVIDIA L40S", "bf16", 362e12),  # "l4" is a prefix of "l40s": the longer name wins
    ("NVIDIA L4", "bf16", 121e12),
])
def test_gpu_peaks_follow_datasheets(name, precision, expected):
    assert gpu_peak(name, precision) == expected


def test_fp32_peak_depends_on_tf32():
    assert gpu_peak("NVIDIA A100-SXM4-80GB", "fp32", tf32=True) == 156e12
    assert gpu_peak("NVIDIA A100-SXM4-80GB", "fp32", tf32=False) == 19.5e12


def test_unknown_gpu_has_no_peak_and_override_wins():
    assert gpu_peak("Some Future Accelerator", "bf16") is None
    assert peak_flops(torch.device("cpu"), "bf16", override=1e12) == 1e12
