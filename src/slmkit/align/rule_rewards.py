"""Rewards for RL: Python rule functions by name, a user's own function, or a trained reward model.

    reward = make_reward("rules:story+finished", tokenizer)        # bundled rules, summed
    reward = make_reward("python:my_rules:brevity", tokenizer)     # my_rules.brevity(rollout) -> float
    reward = make_reward("runs/demo-reward", tokenizer, device)      # a reward model directory (slm reward)
    scores = reward(rollouts)                                        # [len(rollouts)] float32

A `Rollout` is what a rule sees: the prompt's messages and its record's `check` (the bundled data's), the
completion's text and token ids, and whether it ended with the end-of-sequence token. Bundled rules:
- `story`: 1 when the completion passes the prompt's `check` (the synthetic instruction data's code checks: a
  story names the requested character, kind and object; an answer names the right item and no distractor);
- `finished`: 1 when the completion ended with EOS rather than running into max_new_tokens;
- `sentence`: 1 when its text ends a sentence (. ! ? or a closing quote after one);
- `concise`: 1 - tokens / max_new_tokens, for shorter answers.
A reward model scores the prompt + completion at its last token (model/reward_scoring.py).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from slmkit.data.sources.instruction_checks import check_answer
from slmkit.errors import ConfigError, DataError
from slmkit.model.reward_scoring import RewardScorer
from slmkit.model.reward_model import is_reward_dir

_ENDS_SENTENCE = re.compile(r"[.!?][\"']?\s*$")


@dataclass
class Rollout:
    messages: list[dict]  # the prompt
    check: dict | None  # the prompt record's check, when it has one
    text: str  # the completion's text
    prompt_ids: list[int] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)  # completion ids (EOS included when finished)
    finished: bool = False  # ended with EOS
    max_new_tokens: int = 1


def story_rule(r: Rollout) -> float:
    if r.check is None:
        raise DataError("the 'story' rule needs prompts with a 'check' (the bundled data: slm data sft-synthetic)")
    return float(check_answer(r.check, r.text))


RULES: dict[str, Callable[[Rollout], float]] = {
    "story": story_rule,
    "finished": lambda r: float(r.finished),
    "sentence": lambda r: float(bool(_ENDS_SENTENCE.search(r.text))),
    "concise": lambda r: 1.0 - min(len(r.token_ids), r.max_new_tokens) / r.max_new_tokens,
}


def _rule_sum(names: list[str]) -> Callable[[list[Rollout]], torch.Tensor]:
    unknown = [n for n in names if n not in RULES]
    if unknown or not names:
        raise ConfigError(f"unknown reward rule {unknown[0] if unknown else '(none)'!r}: bundled rules are "
                          f"{', '.join(RULES)} (reward=rules:story+finished sums them)")
    return lambda rollouts: torch.tensor([sum(RULES[n](r) for n in names) for r in rollouts], dtype=torch.float32)


def _python_function(spec: str) -> Callable[[list[Rollout]], torch.Tensor]:
    module_name, _, function_name = spec.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"reward=python:{spec}: cannot import it ({e}); give python:MODULE:FUNCTION with MODULE "
                          "on the Python path") from None
    return lambda rollouts: torch.tensor([float(function(r)) for r in rollouts], dtype=torch.float32)


class RewardModelScorer:
    """Scores rollouts with a reward model directory, as `slm reward` writes it. A finished completion is
    rendered as the reply of the prompt's conversation through the reward model's own chat template (the
    sequence it trained on, end-of-turn text included); an unfinished one without the end of turn, so the
    reward model sees that the reply was cut off."""

    def __init__(self, directory: Path, device):
        self.scorer = RewardScorer.from_dir(directory, device=device)

    def __call__(self, rollouts: list[Rollout]) -> torch.Tensor:
        return self.scorer.score_ids([self.scorer.encode_reply(r.messages, r.text) if r.finished
                                      else self.scorer.encode_unfinished(r.messages, r.text) for r in rollouts])


def make_reward(spec: str, device="cpu") -> Callable[[list[Rollout]], torch.Tensor]:
    """The reward function named by `spec`: rules:NAME[+NAME...], python:MODULE:FUNCTION, or a reward model dir."""
    if spec.startswith("rules:"):
        return _rule_sum([n for n in spec.removeprefix("rules:").split("+") if n])
    if spec.startswith("python:"):
        return _python_function(spec.removeprefix("python:"))
    if is_reward_dir(spec):
        return RewardModelScorer(Path(spec), device)
    raise ConfigError(f"reward={spec!r} is neither rules:NAME[+NAME...] ({', '.join(RULES)}), python:MODULE:FUNCTION "
                      "nor a reward model directory (train one with slm reward)")
