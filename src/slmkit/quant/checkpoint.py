"""Quantize a model, and the quantized checkpoint format that `load_model` reads directly.

A quantized checkpoint is a directory like our float one:

    model.safetensors   unquantized tensors (embeddings, norms) as float32, and for each quantized
                        linear layer its stored-format buffers (`<name>.qweight`, `.scales`, ...)
    config.json         {"format": "slmkit-quantized", "format_version": 1,
                         "quantization": {"method": "int4", "group_size": 64, "modules": [...]},
                         "model": {ModelConfig fields}}
    tokenizer files     copied through

Unknown formats, versions or methods raise CheckpointError naming what was found.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from slmkit.errors import CheckpointError
from slmkit.model.checkpoint import WEIGHTS_FILE, materialise_buffers, read_config_json, save_model_directory
from slmkit.model.config import ModelConfig
from slmkit.model.decoder import Decoder
from slmkit.quant.linear import METHODS, Int4Linear, QuantLinear

QUANT_FORMAT = "slmkit-quantized"
QUANT_FORMAT_VERSION = 1


def _linear_names(model, include_head: bool) -> list[str]:
    """Names of the dense nn.Linear layers to quantize: every projection in the blocks, and the head."""
    names = [name for name, m in model.named_modules() if type(m) is nn.Linear and name.startswith("blocks.")]
    if include_head:
        names.append("head")
    return names


def set_module(model, name: str, module: nn.Module) -> None:
    """Put `module` at the dotted `name` of `model` (replacing what was there)."""
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def quantize_model(model, method: str, group_size: int = 64, include_head: bool = True) -> list[str]:
    """Replace `model`'s linear layers by quantized ones in place; return the names replaced.

    The head is quantized as its own layer even when tied to the embedding (the embedding table
    stays float for lookups). MoE expert weights (3-D parameters) stay float.
    """
    if method not in METHODS:
        raise CheckpointError(f"unknown quantization method {method!r}; choose one of {', '.join(METHODS)}")
    names = _linear_names(model, include_head)
    for name in names:
        linear = model.get_submodule(name)
        if method == "int4":
            if linear.in_features % group_size:
                raise CheckpointError(f"layer {name} has {linear.in_features} inputs, not a multiple of the "
                                      f"int4 group size {group_size}; pick a group size that divides it")
            module = Int4Linear.from_linear(linear, group_size)
        else:
            module = METHODS[method].from_linear(linear)
        set_module(model, name, module)
    model.quantization = {"method": method, "group_size": group_size if method == "int4" else None,
                          "modules": names}
    return names


def save_quantized(model, directory: str | os.PathLike, tokenizer_dir: str | os.PathLike | None = None) -> Path:
    """Write a model quantized by `quantize_model` (atomically, by the one model-directory writer)."""
    quant = getattr(model, "quantization", None)
    if quant is None:
        raise CheckpointError("this model is not quantized; call quantize_model first")
    config = {"format": QUANT_FORMAT, "format_version": QUANT_FORMAT_VERSION, "quantization": quant,
              "model": model.config.to_dict()}
    return save_model_directory(directory, dict(model.state_dict()), config,
                                tokenizer_dir if tokenizer_dir else directory,
                                metadata={"format": QUANT_FORMAT, "quant_method": quant["method"]})


def read_quantized_config(directory: str | os.PathLike) -> tuple[ModelConfig, dict]:
    path = Path(directory) / "config.json"
    data = read_config_json(directory)
    if data.get("format") != QUANT_FORMAT:
        raise CheckpointError(f"{path}: format {data.get('format')!r} is not {QUANT_FORMAT!r}")
    version = data.get("format_version")
    if version != QUANT_FORMAT_VERSION:
        raise CheckpointError(f"{path}: quantized format_version {version!r} is not supported "
                              f"(this slmkit reads version {QUANT_FORMAT_VERSION}); upgrade slmkit")
    quant = data.get("quantization") or {}
    if quant.get("method") not in METHODS:
        raise CheckpointError(f"{path}: unknown quantization method {quant.get('method')!r} "
                              f"(known: {', '.join(METHODS)})")
    try:
        return ModelConfig.from_dict(data.get("model") or {}), quant
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: {e}") from None


def load_quantized(directory: str | os.PathLike, device=None, dtype: torch.dtype | None = None):
    """A Decoder with quantized linear layers from a quantized checkpoint directory.

    dtype applies to the float tensors (embeddings, norms); quantized weights keep their format. By
    default they are float32 on CPU: the quantized layers cast their input to bf16 for torch's
    int8/int4 CPU kernels themselves (one small cast per matmul), and float32 models take the runner's
    one-token fast path, which decodes ~1.5x faster than running the whole model in bf16 on CPU. Pass
    dtype=torch.bfloat16 (`--dtype bfloat16`) to halve the float tensors' memory instead.
    """
    directory = Path(directory)
    config, quant = read_quantized_config(directory)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{directory} has no {WEIGHTS_FILE}")
    with torch.device("meta"):
        model = Decoder(config)
    for name in quant.get("modules", []):
        try:
            linear = model.get_submodule(name)
        except AttributeError:
            raise CheckpointError(f"{directory}: quantized module {name!r} does not exist in this model") from None
        cls = METHODS[quant["method"]]
        kwargs = {"group_size": quant["group_size"]} if quant["method"] == "int4" else {}
        with torch.device("cpu"):
            set_module(model, name, cls(linear.in_features, linear.out_features, linear.bias is not None, **kwargs))
    with safe_open(str(weights), framework="pt") as f:
        # Fresh allocations: tensors read from the file can sit at unaligned addresses, and torch's
        # int8 CPU kernel crashes on a misaligned weight.
        tensors = {name: f.get_tensor(name).clone() for name in f.keys()}
    expected = model.state_dict(keep_vars=True)
    missing = [n for n in expected if n not in tensors and expected[n] is not None]
    extra = [n for n in tensors if n not in expected]
    if missing or extra:
        what = f"is missing tensor '{missing[0]}'" if missing else f"has unexpected tensor '{extra[0]}'"
        raise CheckpointError(f"{weights} {what} for its quantization config")
    for name, t in expected.items():
        if tuple(tensors[name].shape) != tuple(t.shape):
            raise CheckpointError(f"{weights}: tensor '{name}' has shape {list(tensors[name].shape)}, "
                                  f"expected {list(t.shape)}")
    model.load_state_dict(tensors, assign=True, strict=False)
    materialise_buffers(model)
    model.quantization = quant
    if dtype is None and (device is None or torch.device(device).type == "cpu"):
        dtype = torch.float32  # also for a checkpoint quantized from a bf16 model
    if dtype is not None:
        for module in model.modules():
            if not isinstance(module, QuantLinear):
                for p_name, p in list(module.named_parameters(recurse=False)):
                    setattr(module, p_name, nn.Parameter(p.detach().to(dtype), requires_grad=False))
    if device is not None:
        model.to(device)
    return model.eval()


def quantized_nbytes(model) -> int:
    """Bytes of all tensors the model holds (a tied weight counted once)."""
    seen, total = set(), 0
    for t in list(model.parameters()) + list(model.buffers()):
        if t.data_ptr() in seen:
            continue
        seen.add(t.data_ptr())
        total += t.numel() * t.element_size()
    return total
