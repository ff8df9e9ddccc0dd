"""Exporting a fine-tune's adapter: merged into its base (slmkit or HF directory), or as a PEFT adapter.

    export_merged("runs/demo-sft", "runs/demo-sft-merged", "slmkit")   # a plain model directory
    export_peft("runs/demo-sft", "peft/demo-sft")   # adapter_config.json + adapter_model.safetensors, base/ beside

The PEFT export writes the base PeftModel needs next to the adapter (OUT/base, a Hugging Face
directory): the base as the fine-tune saw it, with the chat tokens' rows it added and, for QLoRA, the
dequantized NF4 weights the adapter was trained against (merging into the fp16 original instead is a
known source of wrong generations: peft#2321).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from slmkit.finetune.adapter import load_adapted_model, read_adapter_tensors
from slmkit.finetune.lora import merge_lora
from slmkit.finetune.peft_format import to_peft, write_peft_adapter
from slmkit.fileio import atomic_directory
from slmkit.interop.hf_export import export_hf
from slmkit.model.checkpoint import copy_tokenizer_files, save_model_directory, slmkit_config


def export_merged(adapter_dir: str | os.PathLike, out: str | os.PathLike, fmt: str = "slmkit", base=None,
                  dtype: torch.dtype = torch.float32) -> tuple[Path, object]:
    """The adapter folded into its base, written as an slmkit ("slmkit") or Hugging Face ("hf") directory."""
    model, _, _ = load_adapted_model(adapter_dir, base=base, merge=True)
    if fmt == "hf":
        return export_hf(model, out, tokenizer_dir=adapter_dir, dtype=dtype), model.config
    tensors = {k: v.detach().to(dtype) for k, v in model.state_dict().items()}
    if model.config.tie_embeddings:
        tensors.pop("head.weight", None)
    return save_model_directory(out, tensors, slmkit_config(model.config), tokenizer_dir=adapter_dir), model.config


def export_peft(adapter_dir: str | os.PathLike, out: str | os.PathLike, base=None,
                dtype: torch.dtype = torch.float32) -> Path:
    """OUT: the PEFT adapter (+ tokenizer files); OUT/base: its Hugging Face base. Replaces OUT atomically."""
    adapter_dir, out = Path(adapter_dir), Path(out)
    model, _, meta = load_adapted_model(adapter_dir, base=base, merge=False)
    config, tensors = to_peft(meta, read_adapter_tensors(adapter_dir), model.config)
    config["base_model_name_or_path"] = str((out / "base").resolve())
    merge_lora(model, keep_adapters=False)  # the base alone, as trained against
    with atomic_directory(out) as tmp:
        write_peft_adapter(tmp, config, tensors)
        copy_tokenizer_files(adapter_dir, tmp)
        export_hf(model, tmp / "base", tokenizer_dir=adapter_dir, dtype=dtype)
    return out
