"""What of the model a training checkpoint holds, and how it is written and read back.

    weights = FullWeights()                     # pretraining, full fine-tuning: every tensor
    weights.write(directory, weights.select(state), model_config, tokenizer_dir)
    state = weights.read(directory, model_config)

`FullWeights` writes an ordinary model directory (model.safetensors, config.json, tokenizer), so any
checkpoint loads with `load_model`. A parameter-efficient fine-tune passes its own object with the same
four members (finetune/adapter.py's `AdapterWeights`): its checkpoints hold the adapters alone, and the
Trainer restores them non-strictly over the base it was built on.
"""

from __future__ import annotations

from pathlib import Path

import torch

from slmkit.model.checkpoint import CONFIG_FILE, WEIGHTS_FILE, read_weights, slmkit_config, write_model_files

PREFIXES = ("_orig_mod.", "module.")


def strip_prefixes(state: dict) -> dict:
    """Names as the plain model has them: torch.compile's `_orig_mod.` and DDP's `module.` removed."""
    out = {}
    for name, value in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in PREFIXES:
                if name.startswith(prefix):
                    name, changed = name[len(prefix):], True
        out[name] = value
    return out


class FullWeights:
    """Every tensor of the model, as a loadable model directory."""

    files = (WEIGHTS_FILE, CONFIG_FILE)  # what a complete checkpoint must list
    strict = True  # the tensors read back cover the whole model

    def select(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return state

    def write(self, directory: Path, state: dict, model_config, tokenizer_dir: Path | None) -> None:
        """The model files into an existing directory, each atomically, by the one model-directory writer."""
        tensors = {name: t.detach().cpu() for name, t in strip_prefixes(state).items()}
        if model_config.tie_embeddings:
            tensors.pop("head.weight", None)
        write_model_files(directory, tensors, slmkit_config(model_config), tokenizer_dir)

    def read(self, directory: Path, model_config) -> dict[str, torch.Tensor]:
        """The full state dict from model.safetensors (prefixes stripped, a tied head re-added)."""
        state = strip_prefixes(read_weights(directory))
        if model_config.tie_embeddings and "embed.weight" in state:
            state["head.weight"] = state["embed.weight"]
        return state
