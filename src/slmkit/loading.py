"""`load_model(path)`: the one loader every verb uses, for our checkpoints and Hugging Face directories.

It lives above model/, quant/ and interop/ (it imports all three), so none of them imports another upwards.

A directory is ours when its config.json says "format": "slmkit" (or "slmkit-quantized": slmkit.quant's
int8/int4/NF4 checkpoints, loaded with quantized linear layers); it is a Hugging Face model when its
config.json names a supported architecture (Llama, Qwen3, Qwen3-MoE, GPT-2). A `.gguf` file (llama.cpp's
format, interop/gguf_file.py) is read whole: weights dequantized, tokenizer rebuilt from its metadata.
`load_for_inference(path)`
adds the directory's tokenizer and the ids that end generation (`eos_ids_for`), for every layer that
runs a model (infer, finetune, eval, serve).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from slmkit.errors import CheckpointError
from slmkit.interop.gguf_file import import_gguf
from slmkit.interop.hf_config import config_from_hf
from slmkit.interop.hf_import import import_hf, read_hf_config
from slmkit.model.checkpoint import CONFIG_FILE, FORMAT, read_config, read_config_json
from slmkit.model.config import ModelConfig
from slmkit.model.decoder import Decoder
from slmkit.quant.checkpoint import load_quantized, read_quantized_config
from slmkit.tokenizer import load_tokenizer


@dataclass
class ModelInfo:
    """Where a loaded model came from and what comes with it."""

    path: Path
    format: str  # "slmkit", "quantized", "hf" or "gguf"
    config: ModelConfig
    architecture: str | None = None  # HF architecture name for format "hf", GGUF's for "gguf"
    tokenizer_path: Path | None = None  # the directory's tokenizer.json, when there is one
    special_tokens: dict[str, int | list[int] | None] = field(default_factory=dict)  # HF bos/eos/pad ids
    tokenizer: object = None  # a tokenizer that came inside the model file (GGUF)

    def load_tokenizer(self):
        """The model's tokenizer (from its file or its directory's tokenizer.json), or None."""
        if self.tokenizer is not None:
            return self.tokenizer
        return load_tokenizer(self.tokenizer_path.parent) if self.tokenizer_path is not None else None


def detect_format(path: str | os.PathLike) -> str:
    """'slmkit', 'quantized', 'hf' for a model directory, 'gguf' for a .gguf file; CheckpointError saying
    what is wrong otherwise."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"model directory not found: {path}")
    if path.is_file() and path.suffix.lower() == ".gguf":
        return "gguf"
    if not path.is_dir():
        raise CheckpointError(f"{path} is a file; pass the model directory that holds config.json")
    config_path = path / CONFIG_FILE
    data = read_config_json(path)
    if data.get("format") == FORMAT:
        return "slmkit"
    if data.get("format") == "slmkit-quantized":  # slmkit.quant's checkpoints
        return "quantized"
    if "format" in data and "architectures" not in data:
        raise CheckpointError(f"{config_path} has unknown checkpoint format {data['format']!r}; "
                              "slmkit reads 'slmkit', 'slmkit-quantized' and Hugging Face directories")
    if "architectures" in data or "model_type" in data:
        return "hf"
    raise CheckpointError(f"{config_path} is neither an slmkit checkpoint nor a Hugging Face model config")


def load_model(path: str | os.PathLike, device: torch.device | str | None = None,
               dtype: torch.dtype | None = None) -> tuple[torch.nn.Module, ModelInfo]:
    """(Decoder in eval mode, ModelInfo) from our checkpoint directory, an HF model directory or a GGUF file."""
    path = Path(path)
    kind = detect_format(path)
    if kind == "gguf":
        model, tokenizer, arch = import_gguf(path, device=device, dtype=dtype)
        return model, ModelInfo(path, "gguf", model.config, architecture=arch, tokenizer=tokenizer)
    if kind == "slmkit":
        model = Decoder.from_pretrained(path, device=device, dtype=dtype)
        info = ModelInfo(path, "slmkit", model.config)
    elif kind == "quantized":
        model = load_quantized(path, device=device, dtype=dtype)
        info = ModelInfo(path, "quantized", model.config)
    else:
        model, hf, arch = import_hf(path, device=device, dtype=dtype)
        tokens = {k: hf.get(k) for k in ("bos_token_id", "eos_token_id", "pad_token_id") if hf.get(k) is not None}
        info = ModelInfo(path, "hf", model.config, architecture=arch, special_tokens=tokens)
    if (path / "tokenizer.json").is_file():
        info.tokenizer_path = path / "tokenizer.json"
    return model.eval(), info


def read_model_config(path: str | os.PathLike) -> ModelConfig:
    """The ModelConfig of a model directory of either format, without reading weights."""
    kind = detect_format(path)
    if kind == "gguf":
        return import_gguf(path)[0].config
    if kind == "quantized":
        return read_quantized_config(path)[0]
    if kind == "slmkit":
        return read_config(path)
    return config_from_hf(read_hf_config(path))


def load_for_inference(path: str | os.PathLike, device=None, dtype: torch.dtype | None = None):
    """(model, tokenizer or None, eos ids) from a run directory, an HF directory or a quantized checkpoint."""
    model, info = load_model(path, device=device, dtype=dtype)
    tokenizer = info.load_tokenizer()
    return model, tokenizer, eos_ids_for(tokenizer, info)


def eos_ids_for(tokenizer=None, info=None) -> set[int]:
    """The ids that end generation: the tokenizer's EOS and the model config's eos_token_id(s)."""
    ids: set[int] = set()
    if tokenizer is not None and tokenizer.eos_id is not None:
        ids.add(tokenizer.eos_id)
    value = (getattr(info, "special_tokens", None) or {}).get("eos_token_id")
    if value is not None:
        ids.update(value if isinstance(value, list) else [value])
    return ids
