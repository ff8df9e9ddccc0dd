"""Load any model directory for inference, adapter directories included (what `slm generate/chat/serve` call).

    model, tokenizer, eos_ids = load_for_use("runs/demo-sft")        # an slmkit adapter: base + adapter, merged
    model, tokenizer, eos_ids = load_for_use("exports/peft-sft", base="hf/demo")   # a PEFT adapter

An slmkit adapter directory (adapter.json) loads its recorded base, checked by fingerprint; a PEFT
directory (adapter_config.json) loads `base` or its base_model_name_or_path. The adapter is merged into
the weights for speed (exact for a dense base; an NF4 base becomes dense from its dequantized weights,
the values the adapter was trained against), unless merge=False. Anything else is `load_for_inference`.
"""

from __future__ import annotations

import os
from pathlib import Path

from slmkit.errors import CheckpointError
from slmkit.finetune.adapter import is_adapter_dir, load_adapted_model
from slmkit.finetune.lora import merge_lora
from slmkit.finetune.peft_format import is_peft_dir, load_peft_into, read_peft_adapter
from slmkit.loading import eos_ids_for, load_for_inference, load_model
from slmkit.tokenizer import load_tokenizer


def load_for_use(path: str | os.PathLike, base: str | os.PathLike | None = None, device=None, dtype=None,
                 merge: bool = True):
    """(model in eval mode, tokenizer or None, eos ids) for a model, slmkit adapter or PEFT adapter directory."""
    path = Path(path)
    if is_adapter_dir(path):
        model, tokenizer, _ = load_adapted_model(path, base=base, device=device, dtype=dtype, merge=merge)
        return model, tokenizer, eos_ids_for(tokenizer)
    if is_peft_dir(path):
        config, _ = read_peft_adapter(path)
        base_path = Path(base or config.get("base_model_name_or_path") or "")
        if not base_path.is_dir():
            raise CheckpointError(f"{path} is a PEFT adapter whose base {str(base_path)!r} is not a local directory: "
                                  "pass the base model directory (--base DIR)")
        model, info = load_model(base_path, device=device, dtype=dtype)
        load_peft_into(model, path)
        if merge:
            merge_lora(model)
        tok_dir = path if (path / "tokenizer.json").is_file() else base_path
        tokenizer = load_tokenizer(tok_dir) if (tok_dir / "tokenizer.json").is_file() else None
        return model.eval(), tokenizer, eos_ids_for(tokenizer, info)
    if base is not None:
        raise CheckpointError(f"--base is for adapter directories; {path} is a whole model")
    return load_for_inference(path, device=device, dtype=dtype)
