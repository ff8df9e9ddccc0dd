"""Adapters on disk: the tensors a LoRA fine-tune changed, and the base they belong to.

    save_adapter(model, "runs/demo-sft", meta)                     # adapter.json + adapter.safetensors
    model, tokenizer, meta = load_adapted_model("runs/demo-sft")   # the base, checked, with the adapter on
    model, tokenizer, meta = load_adapted_model("runs/demo-sft", merge=True)   # folded in: a plain Decoder

An adapter directory holds `adapter.json` (the LoRA settings, the wrapped modules, the base's path and
fingerprint, whether the base was NF4) and `adapter.safetensors` (adapter tensors and fully trained
modules, by the wrapped model's names: `blocks.0.attn.q_proj.lora_A`, `embed.weight`), plus the
tokenizer the fine-tune used (it may carry a chat template and tokens the base lacks). The fingerprint
is a hash of the base's weights, so an adapter loaded onto any other model is refused by name.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import save_file

from slmkit.errors import CheckpointError
from slmkit.fileio import atomic_file, write_json_atomic
from slmkit.finetune.lora import LoraConfig, add_lora, lora_layers, merge_lora
from slmkit.loading import load_model
from slmkit.model.checkpoint import copy_tokenizer_files, read_weights
from slmkit.quant import quantize_model
from slmkit.tokenizer import load_tokenizer
from slmkit.train.weights import strip_prefixes

ADAPTER_CONFIG = "adapter.json"
ADAPTER_WEIGHTS = "adapter.safetensors"
ADAPTER_FORMAT = "slmkit-adapter"
_SAMPLE = 4096  # elements per tensor that enter the fingerprint


def is_adapter_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def base_fingerprint(model: torch.nn.Module) -> str:
    """A short hash of a (not yet wrapped or quantized) model's weights: names, shapes and an evenly
    spaced sample of each tensor's values rounded to bfloat16 (so fp32 and bf16 loads agree)."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().reshape(-1)
        step = max(1, flat.numel() // _SAMPLE)
        sample = flat[::step][:_SAMPLE].to("cpu", torch.float32).to(torch.bfloat16).view(torch.int16)
        h.update(f"{name}:{tuple(tensor.shape)}:".encode())
        h.update(sample.numpy().tobytes())
    return h.hexdigest()[:16]


def adapter_meta(lora: LoraConfig, modules: list[str], base_path: str, fingerprint: str, base_vocab: int,
                 vocab_size: int, quantization: str | None) -> dict:
    return {"format": ADAPTER_FORMAT, "version": 1, "lora": asdict(lora), "modules": modules,
            "base": {"path": base_path, "fingerprint": fingerprint, "vocab_size": base_vocab},
            "vocab_size": vocab_size, "quantization": quantization}


def read_adapter_meta(directory: str | os.PathLike) -> dict:
    path = Path(directory) / ADAPTER_CONFIG
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{directory} is not an adapter directory (no {ADAPTER_CONFIG})") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{path} is not valid JSON (a half-written adapter?)") from None
    if not isinstance(meta, dict) or meta.get("format") != ADAPTER_FORMAT:
        raise CheckpointError(f"{path} is not an slmkit adapter config (format {meta.get('format')!r})")
    return meta


def write_adapter_files(directory: Path, tensors: dict[str, torch.Tensor], meta: dict,
                        tokenizer_dir: Path | None) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_file(directory / ADAPTER_WEIGHTS) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata={"format": "pt"})
    if tokenizer_dir is not None and Path(tokenizer_dir).resolve() != directory.resolve():
        copy_tokenizer_files(Path(tokenizer_dir), directory)
    write_json_atomic(directory / ADAPTER_CONFIG, meta)  # last: its presence marks a complete adapter


def read_adapter_tensors(directory: str | os.PathLike) -> dict[str, torch.Tensor]:
    return read_weights(directory, ADAPTER_WEIGHTS)


def trainable_names(model: torch.nn.Module) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


class AdapterWeights:
    """The Trainer's view of a LoRA fine-tune (see train/weights.py): checkpoints and the final
    directory hold the trainable tensors only, restored non-strictly over the frozen base."""

    files = (ADAPTER_WEIGHTS, ADAPTER_CONFIG)
    strict = False

    def __init__(self, meta: dict, names: set[str]):
        self.meta, self.names = meta, set(names)

    def select(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v for k, v in strip_prefixes(state).items() if k in self.names}

    def write(self, directory: Path, state: dict, model_config, tokenizer_dir: Path | None) -> None:
        write_adapter_files(directory, self.select(state), self.meta, tokenizer_dir)

    def read(self, directory: Path, model_config) -> dict[str, torch.Tensor]:
        return read_adapter_tensors(directory)


def grown_embedding(old: torch.nn.Embedding, vocab_size: int) -> torch.nn.Embedding:
    """A copy of `old` with rows up to `vocab_size`; new rows start at the mean row, the usual choice
    for added special tokens (their logits start near the average token's)."""
    weight = old.weight
    embed = torch.nn.Embedding(vocab_size, weight.shape[1], device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        embed.weight[: weight.shape[0]] = weight
        embed.weight[weight.shape[0]:] = weight.mean(0)
    return embed


def grown_head(old: torch.nn.Linear, vocab_size: int) -> torch.nn.Linear:
    """An untied output head grown like `grown_embedding`."""
    weight = old.weight
    head = torch.nn.Linear(weight.shape[1], vocab_size, bias=False, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        head.weight[: weight.shape[0]] = weight
        head.weight[weight.shape[0]:] = weight.mean(0)
    return head


def resize_vocabulary(model: torch.nn.Module, vocab_size: int) -> None:
    """Grow the embedding (and an untied head) to `vocab_size` rows (see grown_embedding)."""
    if vocab_size <= model.embed.weight.shape[0]:
        return
    model.embed = grown_embedding(model.embed, vocab_size)
    if model.config.tie_embeddings:
        model.head.weight = model.embed.weight
    else:
        model.head = grown_head(model.head, vocab_size)
    model.config.vocab_size = vocab_size


def prepare_base(model: torch.nn.Module, meta: dict) -> None:
    """What a fine-tune did to its base before adding the adapters: a larger vocabulary, NF4 weights."""
    resize_vocabulary(model, int(meta.get("vocab_size") or model.config.vocab_size))
    if meta.get("quantization") == "nf4":
        quantize_model(model, "nf4", include_head=False)


def check_base(meta: dict, fingerprint: str, base_path) -> None:
    expected = meta["base"]["fingerprint"]
    if fingerprint != expected:
        raise CheckpointError(f"this adapter was trained on a base with fingerprint {expected}, but {base_path} has "
                              f"{fingerprint}: load it with the model it was fine-tuned from "
                              f"({meta['base']['path']})")


def load_adapted_model(directory: str | os.PathLike, base: str | os.PathLike | None = None, device=None,
                       dtype: torch.dtype | None = None, merge: bool = False):
    """(model, tokenizer or None, adapter meta): the adapter's base (recorded path, or `base`), checked
    against the recorded fingerprint, prepared as for training, with the adapter loaded (and merged)."""
    directory = Path(directory)
    meta = read_adapter_meta(directory)
    base_path = Path(base) if base is not None else Path(meta["base"]["path"])
    if not base_path.exists() and not base_path.is_absolute() and (directory.parent / base_path).exists():
        base_path = directory.parent / base_path
    model, _ = load_model(base_path, device=device, dtype=dtype)
    check_base(meta, base_fingerprint(model), base_path)
    prepare_base(model, meta)
    model.requires_grad_(False)
    add_lora(model, LoraConfig(**meta["lora"]))
    tensors = read_adapter_tensors(directory)
    wrapped = {name for name, _ in lora_layers(model)}
    missing = [f"{n}.lora_A" for n in wrapped if f"{n}.lora_A" not in tensors]
    if missing or set(meta["modules"]) != wrapped:
        raise CheckpointError(f"{directory}: the adapter does not match its config (missing {missing[:3]}, "
                              f"modules {sorted(wrapped ^ set(meta['modules']))[:3]})")
    result = model.load_state_dict(tensors, strict=False)
    if result.unexpected_keys:
        raise CheckpointError(f"{directory}: tensors the model does not have: {result.unexpected_keys[:3]}")
    model.to(device or "cpu")
    if merge:
        merge_lora(model)
    tokenizer = load_tokenizer(directory) if (directory / "tokenizer.json").is_file() else None
    return model.eval(), tokenizer, meta
