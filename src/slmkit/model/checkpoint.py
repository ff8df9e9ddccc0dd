"""Our checkpoint format: a directory holding

    model.safetensors      the weights (a tied head is stored once, as embed.weight)
    config.json            the ModelConfig fields plus "format": "slmkit" and "format_version"
    tokenizer.json, ...    the tokenizer files, copied through when given

Writing is atomic (a temporary sibling directory, then a rename), and loading never unpickles.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from slmkit.errors import CheckpointError
from slmkit.model.config import ModelConfig

FORMAT = "slmkit"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
# Files another stage (the tokenizer, HF exports) may have put beside the weights; copied as they are.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                   "merges.txt", "generation_config.json", "chat_template.jinja")


def save_pretrained(model, directory: str | os.PathLike, tokenizer_dir: str | os.PathLike | None = None) -> Path:
    """Write `model` (a Decoder) to `directory`, replacing it whole if it exists.

    tokenizer_dir: a directory whose tokenizer files are copied in (default: keep the ones already in
    `directory`, so re-saving a checkpoint does not lose its tokenizer).
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    source_tokenizer = Path(tokenizer_dir) if tokenizer_dir is not None else directory
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        save_file(model_tensors(model), str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        config = {"format": FORMAT, "format_version": FORMAT_VERSION, **model.config.to_dict()}
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        copy_tokenizer_files(source_tokenizer, tmp)
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
            os.replace(directory, old)
            os.replace(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def model_tensors(model) -> dict[str, torch.Tensor]:
    """The state dict as safetensors wants it: contiguous, detached, each storage once (tied head dropped)."""
    state = {name: t.detach().contiguous() for name, t in model.state_dict().items()}
    if model.config.tie_embeddings:
        state.pop("head.weight", None)
    return state


def copy_tokenizer_files(source: Path, destination: Path) -> list[str]:
    copied = []
    if source.is_dir():
        for name in TOKENIZER_FILES:
            if (source / name).is_file():
                shutil.copy2(source / name, destination / name)
                copied.append(name)
    return copied


def read_config(directory: str | os.PathLike) -> ModelConfig:
    """The ModelConfig of one of our checkpoint directories."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{directory} has no {CONFIG_FILE}; is it a model directory?")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is not valid JSON: {e}") from None
    if data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an slmkit checkpoint (no \"format\": \"{FORMAT}\")")
    if data.get("format_version", 1) > FORMAT_VERSION:
        raise CheckpointError(f"{path} has format_version {data['format_version']}; upgrade slmkit to read it")
    fields = {k: v for k, v in data.items() if k not in ("format", "format_version")}
    try:
        return ModelConfig.from_dict(fields)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: {e}") from None


def load_pretrained(directory: str | os.PathLike, device=None, dtype: torch.dtype | None = None):
    """Build a Decoder from one of our checkpoint directories (weights via safetensors only)."""
    from slmkit.model.decoder import Decoder

    directory = Path(directory)
    config = read_config(directory)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{directory} has no {WEIGHTS_FILE}")
    with torch.device("meta"):
        model = Decoder(config)
    with safe_open(str(weights), framework="pt") as f:
        tensors = {name: f.get_tensor(name) for name in f.keys()}
    load_tensors(model, tensors, source=str(weights))
    return model.to(device=device, dtype=dtype) if (device or dtype) else model


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
    _materialise_buffers(model)


def model_tensors_shapes(model) -> dict[str, torch.Size]:
    shapes = {name: t.shape for name, t in model.state_dict().items()}
    if model.config.tie_embeddings:
        shapes.pop("head.weight", None)
    return shapes


def _materialise_buffers(model) -> None:
    """Non-persistent buffers (RoPE frequencies) are computed, not stored: rebuild any left on meta."""
    from slmkit.model.positions import rope_inverse_frequencies

    if model.rope is not None and model.rope.inv_freq.is_meta:
        model.rope.inv_freq = rope_inverse_frequencies(model.config)[0]
