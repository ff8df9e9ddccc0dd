"""One base model carrying several adapters at once, each batch row routed to its own (what
`slm serve BASE --adapter NAME=DIR ...` loads).

    model, served = load_adapter_set("runs/demo", {"stories": "runs/demo-sft", "qa": "exports/peft-qa"})
    [s.name for s in served]            # ['demo', 'stories', 'qa']: the bare base is index -1
    model.adapter_route.set([0, -1])    # row 0 -> stories, row 1 -> the base; then model(ids) as usual

Each adapter is an slmkit adapter directory (checked against the base's fingerprint, as `slm chat`
does) or a PEFT LoRA directory. Its LoRA tensors go into `RoutedLora` wrappers of the base's
projections; modules it trained in full (the embedding and head of a fine-tune that added chat tokens,
a norm) become `RoutedModule` variants. Nothing is merged: the base weights stay shared, so ten
adapters cost ten adapters' memory, not ten models'. QLoRA adapters need the NF4 base they were
trained on, so a set is all NF4 (the base is quantized once) or all dense.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from slmkit.errors import CheckpointError
from slmkit.finetune.adapter import (
    base_fingerprint, check_base, grown_embedding, grown_head, is_adapter_dir, read_adapter_meta, read_adapter_tensors,
)
from slmkit.finetune.adapter_routing import BASE, AdapterRoute, RoutedAdapter, RoutedLora, RoutedModule
from slmkit.finetune.lora import LORA_PARAMS, LoraConfig, LoraLinear, set_module
from slmkit.finetune.peft_format import from_peft, is_peft_dir, read_peft_adapter
from slmkit.loading import eos_ids_for, load_model
from slmkit.quant import quantize_model
from slmkit.tokenizer import load_tokenizer


@dataclass
class AdapterFiles:
    """One adapter as read from disk, by our module names."""

    name: str
    directory: Path
    lora: LoraConfig
    lora_modules: list[str]
    tensors: dict[str, torch.Tensor]
    vocab_size: int
    quantization: str | None
    tokenizer: object | None
    peft: bool

    def full_modules(self) -> list[str]:
        """Modules trained in full (their tensors are not LoRA parameters)."""
        names = {key.rpartition(".")[0] for key in self.tensors if key.rpartition(".")[2] not in LORA_PARAMS}
        return sorted(names)


def read_adapter_files(name: str, directory: Path, base_fingerprint_: str, base_path, model_config) -> AdapterFiles:
    """An slmkit adapter (checked against the base) or a PEFT adapter; CheckpointError names the adapter."""
    tokenizer = load_tokenizer(directory) if (directory / "tokenizer.json").is_file() else None
    try:
        if is_adapter_dir(directory):
            meta = read_adapter_meta(directory)
            check_base(meta, base_fingerprint_, base_path)
            return AdapterFiles(name, directory, LoraConfig(**meta["lora"]), list(meta["modules"]),
                                read_adapter_tensors(directory), int(meta.get("vocab_size") or model_config.vocab_size),
                                meta.get("quantization"), tokenizer, peft=False)
        if is_peft_dir(directory):
            config, peft_tensors = read_peft_adapter(directory)
            lora, tensors, modules = from_peft(config, peft_tensors, model_config)
            embed = tensors.get("embed.weight")
            vocab = embed.shape[0] if embed is not None else model_config.vocab_size
            return AdapterFiles(name, directory, lora, modules, tensors, vocab, None, tokenizer, peft=True)
    except CheckpointError as e:
        raise CheckpointError(f"adapter {name} ({directory}): {e}") from None
    raise CheckpointError(f"adapter {name}: {directory} is neither an slmkit adapter (adapter.json) nor a PEFT "
                          "adapter (adapter_config.json + adapter_model.safetensors)")


def load_adapter_set(base_path: str | os.PathLike, adapters: dict[str, str | os.PathLike], device=None,
                     dtype: torch.dtype | None = None, base_name: str | None = None):
    """(model with `model.adapter_route`, [RoutedAdapter for the base, then one per adapter in order])."""
    base_path = Path(base_path)
    model, info = load_model(base_path, device=device, dtype=dtype)
    base_tokenizer = info.load_tokenizer()
    fingerprint = base_fingerprint(model)
    files = [read_adapter_files(name, Path(d), fingerprint, base_path, model.config) for name, d in adapters.items()]
    _check_compatible(files)
    if files and files[0].quantization == "nf4":
        quantize_model(model, "nf4", include_head=False)
    model.requires_grad_(False)
    route = AdapterRoute()
    served = [RoutedAdapter(base_name or base_path.resolve().name, BASE, base_tokenizer,
                            eos_ids_for(base_tokenizer, info), model.config.vocab_size)]
    for index, adapter in enumerate(files):
        _attach_lora(model, route, index, adapter)
        _attach_full_modules(model, route, index, adapter)
        tokenizer = adapter.tokenizer or base_tokenizer
        eos = eos_ids_for(tokenizer, info) if adapter.peft or adapter.tokenizer is None else eos_ids_for(tokenizer)
        served.append(RoutedAdapter(adapter.name, index, tokenizer, eos, adapter.vocab_size))
    model.adapter_route = route
    model.to(device or "cpu")
    return model.eval(), served


def _check_compatible(files: list[AdapterFiles]) -> None:
    """One NF4-or-dense base for all; no module trained in full that holds (or sits in) a LoRA target."""
    kinds = {f.quantization == "nf4" for f in files}
    if len(kinds) > 1:
        qlora = [f.name for f in files if f.quantization == "nf4"]
        raise CheckpointError(f"adapters {', '.join(qlora)} were trained on an NF4 base (QLoRA) and the others on a "
                              "dense one; one server holds one base: serve the two kinds from separate servers")
    lora = {m for f in files for m in f.lora_modules}
    for f in files:
        for full in f.full_modules():
            clash = next((m for m in lora if m == full or m.startswith(full + ".") or full.startswith(m + ".")), None)
            if clash is not None:
                raise CheckpointError(f"adapter {f.name} trains {full} in full, which overlaps the LoRA-adapted {clash} "
                                      "of this adapter set; merge it (slm export --merge) and serve it on its own")


def _attach_lora(model: nn.Module, route: AdapterRoute, index: int, adapter: AdapterFiles) -> None:
    for name in adapter.lora_modules:
        try:
            current = model.get_submodule(name)
        except AttributeError:
            raise CheckpointError(f"adapter {adapter.name}: the base has no module {name}") from None
        routed = current if isinstance(current, RoutedLora) else RoutedLora(current, route)
        if routed is not current:
            set_module(model, name, routed)
        layer = LoraLinear(routed.base, adapter.lora.r, adapter.lora.scaling, 0.0, adapter.lora.dora)
        params = ["lora_A", "lora_B"] + (["lora_magnitude"] if adapter.lora.dora else [])
        for param in params:
            _copy_into(getattr(layer, param), adapter, f"{name}.{param}")
        routed.adapters[str(index)] = layer


def _attach_full_modules(model: nn.Module, route: AdapterRoute, index: int, adapter: AdapterFiles) -> None:
    """Each fully trained module becomes this adapter's variant of it; a larger vocabulary grows the
    embedding and head (tied heads share the variant embedding's weight, as in the trained model)."""
    names = adapter.full_modules()
    vocab = adapter.vocab_size
    if vocab > model.config.vocab_size:
        names = sorted(set(names) | {"embed"} | (set() if model.config.tie_embeddings else {"head"}))
    variants: dict[str, nn.Module] = {}
    for name in names:
        try:
            base = _unrouted(model.get_submodule(name))
        except AttributeError:
            raise CheckpointError(f"adapter {adapter.name}: the base has no module {name}") from None
        if name == "embed" and vocab > model.config.vocab_size:
            variant = grown_embedding(base, vocab)
        elif name == "head" and vocab > model.config.vocab_size:
            variant = grown_head(base, vocab)
        else:
            variant = copy.deepcopy(base)
        for param, tensor in variant.named_parameters():
            key = f"{name}.{param}"
            if key in adapter.tensors:
                _copy_into(tensor, adapter, key)
        variants[name] = variant
    if model.config.tie_embeddings and "embed" in variants:
        head = nn.Linear(model.config.d_model, vocab, bias=False, device=variants["embed"].weight.device,
                         dtype=variants["embed"].weight.dtype)
        head.weight = variants["embed"].weight
        variants["head"] = head
    for name, variant in variants.items():
        current = model.get_submodule(name)
        routed = current if isinstance(current, RoutedModule) else RoutedModule(current, route)
        if routed is not current:
            set_module(model, name, routed)
        routed.variants[str(index)] = variant.requires_grad_(False)


def _unrouted(module: nn.Module) -> nn.Module:
    return module.base if isinstance(module, RoutedModule) else module


def _copy_into(target: torch.Tensor, adapter: AdapterFiles, key: str) -> None:
    tensor = adapter.tensors.get(key)
    if tensor is None:
        raise CheckpointError(f"adapter {adapter.name} ({adapter.directory}) has no tensor {key}")
    if tuple(tensor.shape) != tuple(target.shape):
        raise CheckpointError(f"adapter {adapter.name}: {key} is {tuple(tensor.shape)} but this base needs "
                              f"{tuple(target.shape)}; was it trained on another base?")
    with torch.no_grad():
        target.copy_(tensor)
