"""Write our Decoder as a Hugging Face directory that `AutoModelForCausalLM.from_pretrained` loads
(and, with tokenizer files, `AutoTokenizer`). No transformers needed to write it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from slmkit.fileio import atomic_directory, write_text_atomic
from slmkit.interop.hf_config import config_to_hf, export_architecture
from slmkit.interop.hf_weights import export_weights
from slmkit.model.checkpoint import write_model_files

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

    with atomic_directory(out_dir) as tmp:
        write_model_files(tmp, tensors, hf_config, tokenizer_dir)
        if (tmp / "tokenizer.json").is_file() and not (tmp / "tokenizer_config.json").is_file():
            write_text_atomic(tmp / "tokenizer_config.json",
                              json.dumps({"tokenizer_class": "PreTrainedTokenizerFast"}, indent=2) + "\n")
    return out_dir
