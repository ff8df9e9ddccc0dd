"""A reward model as a scorer: one number per (conversation, reply), read as `slm reward` trained it.

    scorer = RewardScorer.from_dir("runs/demo-reward")                 # a reward model directory
    scores = scorer.score_replies(conversations, replies)               # [len(replies)] floats
    scores = scorer.score_ids([scorer.encode_unfinished(messages, text), ...])   # a reply cut off

`score_replies` renders each conversation with the reply as its last assistant turn through the reward
model's chat template, without a generation prompt: the sequence `slm reward` trained on (tokenize_chat's ids,
the end-of-turn text included), so the head reads the same position it learned on. A sequence longer than the
model's context loses its start (as a long training pair loses its prompt's start). A reply that ran into
its token limit is scored without an end of turn (`encode_unfinished`), so the reward model sees it was cut.
`slm eval --reward-model` adds the mean score to the chat tasks' metrics (eval/reward_scoring.py); `slm rl
reward=DIR` scores rollouts with it. It lives beside the reward model so that both can use it.
"""

from __future__ import annotations

import os

import torch

from slmkit.model.reward_model import load_reward_model
from slmkit.tokenizer import load_tokenizer
from slmkit.tokenizer.chat_template import render_chat


class RewardScorer:
    def __init__(self, reward_model, tokenizer, batch_size: int = 16):
        self.model, self.tokenizer, self.batch_size = reward_model.eval(), tokenizer, batch_size
        self.window = reward_model.config.max_seq_len
        eos = getattr(tokenizer, "eos_id", None)
        self.pad_id = eos if eos is not None else 0

    @classmethod
    def from_dir(cls, directory: str | os.PathLike, device=None, batch_size: int = 16) -> "RewardScorer":
        # the reward model's own tokenizer and template: the ones it was trained with (a TokenizerError if missing)
        return cls(load_reward_model(directory, device=device), load_tokenizer(directory), batch_size)

    def encode_reply(self, messages: list[dict], reply: str) -> list[int]:
        """The ids of `messages` + the assistant turn `reply`, rendered whole as in training."""
        conversation = [*messages, {"role": "assistant", "content": reply}]
        return self.tokenizer.encode(render_chat(self.tokenizer, conversation, add_generation_prompt=False))

    def encode_unfinished(self, messages: list[dict], partial_reply: str) -> list[int]:
        """The ids of `messages`, the generation prompt and a reply that was cut off (no end of turn)."""
        return self.tokenizer.encode(render_chat(self.tokenizer, messages, add_generation_prompt=True) + partial_reply)

    def score_replies(self, conversations: list[list[dict]], replies: list[str]) -> list[float]:
        if len(conversations) != len(replies):
            raise ValueError(f"{len(conversations)} conversations but {len(replies)} replies to score")
        return self.score_ids([self.encode_reply(m, r) for m, r in zip(conversations, replies)]).tolist()

    @torch.no_grad()
    def score_ids(self, sequences: list[list[int]]) -> torch.Tensor:
        """[len(sequences)] float32 rewards, read at each sequence's last token (right padding)."""
        device = next(self.model.parameters()).device
        scores = []
        for start in range(0, len(sequences), self.batch_size):
            rows = [list(s)[-self.window:] for s in sequences[start:start + self.batch_size]]
            if not all(rows):
                raise ValueError("an empty sequence has no token for the reward model to read")
            width = max(len(r) for r in rows)
            ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for k, row in enumerate(rows):
                ids[k, :len(row)], mask[k, :len(row)] = torch.tensor(row), 1
            scores.append(self.model(ids.to(device), attention_mask=mask.to(device)).cpu())
        return torch.cat(scores) if scores else torch.zeros(0)

