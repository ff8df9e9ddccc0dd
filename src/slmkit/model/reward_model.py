"""A reward model: the decoder with a scalar head read at each sequence's last real token.

    reward_model = RewardModel(decoder)                      # score head zero-initialised: every reward starts at 0
    rewards = reward_model(ids, attention_mask=mask)         # [batch] float32, left or right padding
    save_reward_model(reward_model, "runs/reward", tokenizer_dir="runs/demo-sft")
    reward_model = load_reward_model("runs/reward")

The head reads the final hidden state (after the last norm) of the last token whose attention_mask is 1, as
transformers' *ForSequenceClassification with num_labels=1 reads the last non-padding token. On disk a reward
model is an ordinary model directory (its decoder, language-model head included, so `slm generate` and every
loader still read it) plus `reward_head.safetensors` (`score.weight` [1, d_model]) and `reward.json`, written last.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from slmkit.errors import CheckpointError
from slmkit.fileio import atomic_file, write_json_atomic
from slmkit.model.checkpoint import read_weights, save_pretrained
from slmkit.model.decoder import Decoder

REWARD_HEAD_FILE = "reward_head.safetensors"
REWARD_CONFIG_FILE = "reward.json"
REWARD_FORMAT = "slmkit-reward"


def last_token_index(ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """[batch] index of each row's last real token (attention_mask 1); the last position without a mask."""
    if attention_mask is None:
        return torch.full((ids.shape[0],), ids.shape[1] - 1, dtype=torch.long, device=ids.device)
    if bool((attention_mask.sum(-1) == 0).any()):
        raise ValueError("a row of the batch has no real token (attention_mask all 0): nothing to score")
    return ids.shape[1] - 1 - attention_mask.flip(-1).long().argmax(-1)


class RewardModel(nn.Module):
    def __init__(self, decoder: Decoder):
        super().__init__()
        self.decoder = decoder
        self.score = nn.Linear(decoder.config.d_model, 1, bias=False, device=decoder.embed.weight.device)
        nn.init.zeros_(self.score.weight)  # rewards start equal: the Bradley-Terry loss starts at ln 2

    @property
    def config(self):
        return self.decoder.config

    @property
    def gradient_checkpointing(self) -> bool:
        return self.decoder.gradient_checkpointing

    @gradient_checkpointing.setter
    def gradient_checkpointing(self, value: bool) -> None:
        self.decoder.gradient_checkpointing = value

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """ids [batch, seq] (padding anywhere the mask says, left or right) -> rewards [batch] float32."""
        hidden = self.decoder(ids, attention_mask=attention_mask, hidden_only=True).hidden
        last = hidden[torch.arange(ids.shape[0], device=ids.device), last_token_index(ids, attention_mask)]
        return self.score(last.to(self.score.weight.dtype)).squeeze(-1).float()


def is_reward_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / REWARD_CONFIG_FILE).is_file()


def write_reward_head(directory: str | os.PathLike, score_weight: torch.Tensor, meta: dict | None = None) -> None:
    """The head and reward.json into an existing model directory (reward.json last: it marks a complete one)."""
    directory = Path(directory)
    with atomic_file(directory / REWARD_HEAD_FILE) as tmp:
        save_file({"score.weight": score_weight.detach().cpu().float().contiguous()}, str(tmp))
    write_json_atomic(directory / REWARD_CONFIG_FILE, {"format": REWARD_FORMAT, "version": 1, **(meta or {})})


def save_reward_model(model: RewardModel, directory: str | os.PathLike, tokenizer_dir=None, meta: dict | None = None) -> Path:
    directory = save_pretrained(model.decoder, directory, tokenizer_dir=tokenizer_dir)
    write_reward_head(directory, model.score.weight, meta)
    return directory


def read_reward_meta(directory: str | os.PathLike) -> dict:
    path = Path(directory) / REWARD_CONFIG_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{directory} is not a reward model (no {REWARD_CONFIG_FILE}); train one with "
                              "`slm reward`") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{path} is not valid JSON (a half-written reward model?)") from None
    if not isinstance(meta, dict) or meta.get("format") != REWARD_FORMAT:
        raise CheckpointError(f"{path} is not an slmkit reward model config (format {meta.get('format')!r})")
    return meta


def load_reward_model(directory: str | os.PathLike, device=None, dtype: torch.dtype | None = None) -> RewardModel:
    """A reward model directory -> RewardModel (weights via safetensors only)."""
    read_reward_meta(directory)
    head = read_weights(directory, REWARD_HEAD_FILE)
    if set(head) != {"score.weight"}:
        raise CheckpointError(f"{directory}/{REWARD_HEAD_FILE} must hold exactly 'score.weight', has {sorted(head)[:3]}")
    model = RewardModel(Decoder.from_pretrained(directory))
    if tuple(head["score.weight"].shape) != tuple(model.score.weight.shape):
        raise CheckpointError(f"{directory}: score.weight has shape {list(head['score.weight'].shape)}, the decoder "
                              f"needs {list(model.score.weight.shape)}")
    with torch.no_grad():
        model.score.weight.copy_(head["score.weight"])
    return model.to(device=device, dtype=dtype) if (device or dtype) else model
