"""Write our Decoder as a Hugging Face directory that `AutoModelForCausalLM.from_pretrained` loads
(and, with tokenizer files, `AutoTokenizer`). No transformers needed to write it."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from slmkit.interop.hf_config import config_to_hf, export_architecture
from slmkit.interop.hf_weights import export_weights
from slmkit.interop.safetensors_dir import SINGLE_FILE, write_safetensors
from slmkit.model.checkpoint import copy_tokenizer_files

_DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


def export_hf(model, out_dir: str | os.PathLike, tokenizer_dir: str | os.PathLike | None = None,
              dtype: torch.dtype = torch.float32, special_tokens: dict[str, int] | None = None) -> Path:
    """Write `model` to `out_dir` (replaced atomically) as the HF architecture that matches its config.

    tokenizer_dir: copy tokenizer.json / tokenizer_config.json / ... from there. If it has a tokenizer.json
    but no tokenizer_config.json, a minimal one naming PreTrainedTokenizerFast is written so AutoTokenizer
    can load it. special_tokens: e.g. {"bos_token_id": 1, "eos_token_id": 2} for config.json.
    """
    out_dir = Path(out_dir)
    arch = export_architecture(model.config)
    hf_config = config_to_hf(model.config, arch)
    hf_config["torch_dtype"] = _DTYPE_NAMES[dtype]
    hf_config.update(special_tokens or {})
    state = {k: v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu()
             for k, v in model.state_dict().items()}
    tensors = export_weights(state, model.config, arch)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        write_safetensors(tensors, tmp / SINGLE_FILE)
        (tmp / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n", encoding="utf-8")
        if tokenizer_dir is not None:
            copied = copy_tokenizer_files(Path(tokenizer_dir), tmp)
            if "tokenizer.json" in copied and "tokenizer_config.json" not in copied:
                (tmp / "tokenizer_config.json").write_text(
                    json.dumps({"tokenizer_class": "PreTrainedTokenizerFast"}, indent=2) + "\n", encoding="utf-8")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
