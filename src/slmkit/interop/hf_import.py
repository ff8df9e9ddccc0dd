"""Build our Decoder from a Hugging Face model directory (config.json + safetensors), no transformers needed."""

from __future__ import annotations

from pathlib import Path

import torch

from slmkit.interop.hf_config import config_from_hf, hf_architecture
from slmkit.interop.hf_weights import import_weights
from slmkit.interop.safetensors_dir import TensorSource
from slmkit.model.checkpoint import read_config_json
from slmkit.model.decoder import Decoder


def read_hf_config(directory: str | Path) -> dict:
    return read_config_json(directory)


def import_hf(directory: str | Path, device=None, dtype: torch.dtype | None = None):
    """(model, hf_config dict, architecture name) for an HF Llama / Qwen3 / Qwen3-MoE / GPT-2 directory.

    Weights are converted to float32 unless `dtype` is given. Missing, unexpected or mis-shaped tensors
    raise CheckpointError naming the tensor.
    """
    directory = Path(directory)
    hf = read_hf_config(directory)
    arch = hf_architecture(hf)
    config = config_from_hf(hf)
    source = TensorSource(directory)
    tensors = import_weights(source, config, arch)
    return Decoder.from_tensors(config, tensors, f"{directory} ({arch})", device, dtype), hf, arch
