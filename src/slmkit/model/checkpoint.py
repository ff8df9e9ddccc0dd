"""Our checkpoint format, and the one writer of model directories.

A model directory holds

    model.safetensors      the weights (a tied head is stored once, as embed.weight)
    config.json            the ModelConfig fields plus "format": "slmkit" and "format_version"
    tokenizer.json, ...    the tokenizer files, copied through when given

`write_model_files` writes those three things (each file atomically) for every kind of model directory
slmkit produces: `save_pretrained`, training checkpoints and the run's final model (slmkit.train),
quantized checkpoints (slmkit.quant) and Hugging Face exports (slmkit.interop), which differ only in
their tensors and config.json. `save_model_directory` writes a whole directory atomically (a temporary
sibling, then a rename). Loading never unpickles.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from slmkit.errors import CheckpointError
from slmkit.fileio import atomic_directory, atomic_file, write_text_atomic
from slmkit.model.config import ModelConfig
from slmkit.model.positions import rope_inverse_frequencies

FORMAT = "slmkit"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
# Files another stage (the tokenizer, HF exports) may have put beside the weights; copied as they are.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                   "merges.txt", "generation_config.json", "chat_template.jinja")


def write_model_files(directory: str | os.PathLike, tensors: dict[str, torch.Tensor], config: dict,
                      tokenizer_dir: str | os.PathLike | None = None, metadata: dict[str, str] | None = None) -> None:
    """model.safetensors (`tensors`, metadata format=pt plus `metadata`), config.json (`config`) and the
    tokenizer files of `tokenizer_dir` into an existing `directory`, each file atomically."""
    directory = Path(directory)
    with atomic_file(directory / WEIGHTS_FILE) as tmp:
        save_file(_unshared(tensors), str(tmp), metadata={"format": "pt", **(metadata or {})})
    write_text_atomic(directory / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
    if tokenizer_dir is not None and Path(tokenizer_dir).resolve() != directory.resolve():
        copy_tokenizer_files(Path(tokenizer_dir), directory)


def save_model_directory(directory: str | os.PathLike, tensors: dict[str, torch.Tensor], config: dict,
                         tokenizer_dir: str | os.PathLike | None = None,
                         metadata: dict[str, str] | None = None) -> Path:
    """Write a whole model directory atomically, replacing `directory` if it exists."""
    with atomic_directory(directory) as tmp:
        write_model_files(tmp, tensors, config, tokenizer_dir, metadata)
    return Path(directory)


def slmkit_config(config: ModelConfig) -> dict:
    """config.json of our format."""
    return {"format": FORMAT, "format_version": FORMAT_VERSION, **config.to_dict()}


def save_pretrained(model, directory: str | os.PathLike, tokenizer_dir: str | os.PathLike | None = None) -> Path:
    """Write `model` (a Decoder) to `directory`, replacing it whole if it exists.

    tokenizer_dir: a directory whose tokenizer files are copied in (default: keep the ones already in
    `directory`, so re-saving a checkpoint does not lose its tokenizer).
    """
    source_tokenizer = tokenizer_dir if tokenizer_dir is not None else directory
    return save_model_directory(directory, model_tensors(model), slmkit_config(model.config), source_tokenizer)


def model_tensors(model, state: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The state dict (default: `model`'s) as our format stores it: detached, on the CPU, the tied
    head dropped (it is embed.weight)."""
    state = model.state_dict() if state is None else state
    tensors = {name: t.detach().cpu() for name, t in state.items()}
    if model.config.tie_embeddings:
        tensors.pop("head.weight", None)
    return tensors


def _unshared(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous tensors, each storage once (safetensors refuses tensors that share memory)."""
    out, storages = {}, set()
    for name, t in tensors.items():
        t = t.detach().contiguous()
        if t.numel() and t.untyped_storage().data_ptr() in storages:
            t = t.clone()
        storages.add(t.untyped_storage().data_ptr())
        out[name] = t
    return out


def copy_tokenizer_files(source: Path, destination: Path) -> list[str]:
    copied = []
    if source.is_dir():
        for name in TOKENIZER_FILES:
            if (source / name).is_file():
                with atomic_file(destination / name) as tmp:
                    shutil.copy2(source / name, tmp)
                copied.append(name)
    return copied


def read_config_json(directory: str | os.PathLike) -> dict:
    """The parsed config.json of any model directory (ours, quantized or Hugging Face)."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{directory} has no {CONFIG_FILE}; pass a model directory written by slmkit "
                              "or by save_pretrained")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} holds {type(data).__name__}, not a JSON object")
    return data


def read_config(directory: str | os.PathLike) -> ModelConfig:
    """The ModelConfig of one of our checkpoint directories."""
    path = Path(directory) / CONFIG_FILE
    data = read_config_json(directory)
    if data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an slmkit checkpoint (no \"format\": \"{FORMAT}\")")
    if data.get("format_version", 1) > FORMAT_VERSION:
        raise CheckpointError(f"{path} has format_version {data['format_version']}; upgrade slmkit to read it")
    fields = {k: v for k, v in data.items() if k not in ("format", "format_version")}
    try:
        return ModelConfig.from_dict(fields)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: {e}") from None


def read_weights(directory: str | os.PathLike, file_name: str = WEIGHTS_FILE) -> dict[str, torch.Tensor]:
    """The tensors of a directory's model.safetensors (or another safetensors file in it; never unpickles)."""
    weights = Path(directory) / file_name
    if not weights.is_file():
        raise CheckpointError(f"{directory} has no {file_name}")
    with safe_open(str(weights), framework="pt") as f:
        return {name: f.get_tensor(name) for name in f.keys()}


def load_tensors(model, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Fill `model` (possibly on the meta device) from `tensors`, which must match exactly.

    A missing, unexpected or wrongly shaped tensor raises CheckpointError naming it and both shapes.
    Values are converted to each parameter's dtype (float32 unless the model was cast).
    """
    expected = model_tensors_shapes(model)
    missing = [n for n in expected if n not in tensors]
    if missing:
        raise CheckpointError(f"{source} is missing tensor '{missing[0]}' (shape {list(expected[missing[0]])})"
                              + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
    extra = [n for n in tensors if n not in expected]
    if extra:
        raise CheckpointError(f"{source} has unexpected tensor '{extra[0]}' (shape {list(tensors[extra[0]].shape)})"
                              " that this model config does not use")
    for name, shape in expected.items():
        if tuple(tensors[name].shape) != tuple(shape):
            raise CheckpointError(f"{source}: tensor '{name}' has shape {list(tensors[name].shape)}, "
                                  f"the model config expects {list(shape)}")
    state = {}
    for name, param in model.state_dict(keep_vars=True).items():
        source_name = "embed.weight" if name == "head.weight" and model.config.tie_embeddings else name
        dtype = param.dtype if param.is_floating_point() else tensors[source_name].dtype
        state[name] = tensors[source_name].to(dtype)
    model.load_state_dict(state, assign=True)
    if model.config.tie_embeddings:
        model.head.weight = model.embed.weight  # assign=True replaced the parameter objects; re-tie them
    materialise_buffers(model)


def model_tensors_shapes(model) -> dict[str, torch.Size]:
    shapes = {name: t.shape for name, t in model.state_dict().items()}
    if model.config.tie_embeddings:
        shapes.pop("head.weight", None)
    return shapes


def materialise_buffers(model) -> None:
    """Non-persistent buffers (RoPE frequencies) are computed, not stored: rebuild any left on meta."""
    if model.rope is not None and model.rope.inv_freq.is_meta:
        model.rope.inv_freq = rope_inverse_frequencies(model.config)[0]
