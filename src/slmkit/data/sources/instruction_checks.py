"""Checking a model's answers on the synthetic instruction data, by code: no judge model needed.

Every example from `slmkit.data.sources.instructions` carries a `check` dict saying what its final
answer must contain. The rule, the same for every kind: each required item must appear in the answer
and no rejected item may (a model that lists every name in the story does not get "Who lost the
ball?" right by luck).

An item "appears" when its words occur in order as whole words, ignoring case and punctuation, and
the last word may carry a regular plural ending: "key" matches "Key.", "keys" and "Max's key", not
"keyboard"; "teddy bear" matches "teddy bears"; "puppy" matches "puppies". Articles are never part
of an item, so "a key", "the key" and "keys" all count for "key". Irregular plurals ("mice") do not.

    from slmkit.data.sources.instruction_checks import check_answer, prompt_and_reference, score_answers
    prompt, reference = prompt_and_reference(example)       # messages to send, the answer written with it
    check_answer(example["check"], "Max lost his key.")      # -> True or False
    score_answers(examples, answers)                         # -> {"story_request": {"n": .., "accuracy": ..}, ...}
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from slmkit.errors import DataError

_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _same(word: str, wanted: str, last: bool) -> bool:
    if word == wanted:
        return True
    if not last:
        return False
    plurals = {wanted + "s", wanted + "es"}
    if wanted.endswith("y"):
        plurals.add(wanted[:-1] + "ies")
    return word in plurals


def mentions(text: str, item: str) -> bool:
    """True when `item`'s words occur in `text` in order as whole words (case-insensitive; the last may be plural)."""
    wanted = _words(item)
    if not wanted:
        raise DataError(f"cannot check for {item!r}: it has no words")
    words = _words(text)
    n = len(wanted)
    return any(
        all(_same(words[i + j], wanted[j], last=j == n - 1) for j in range(n)) for i in range(len(words) - n + 1)
    )


def required_items(check: dict) -> tuple[list[str], list[str]]:
    """(items the answer must mention, items it must not) for one example's `check`."""
    kind = check.get("kind")
    if kind == "story_request":
        return [check["name"], check["character"], check["object"]], []
    if kind in ("story_question", "multi_turn"):
        answer = check["answer"]
        return ([answer] if isinstance(answer, str) else list(answer)), list(check.get("reject", []))
    raise DataError(f"unknown check kind {kind!r}; expected story_request, story_question or multi_turn")


def check_answer(check: dict, answer: str) -> bool:
    """Whether `answer` (the model's final reply) satisfies `check` (see the module docstring for the rule)."""
    required, rejected = required_items(check)
    return all(mentions(answer, item) for item in required) and not any(mentions(answer, item) for item in rejected)


def prompt_and_reference(example: dict) -> tuple[list[dict], str]:
    """The messages to send a model (all but the final assistant turn) and that turn's reference answer."""
    messages = example.get("messages") or []
    if not messages or messages[-1].get("role") != "assistant":
        raise DataError("example does not end with an assistant turn; it has nothing to check")
    return messages[:-1], messages[-1]["content"]


def score_answers(examples: Iterable[dict], answers: Iterable[str]) -> dict:
    """Accuracy per check kind and over all: {kind: {"n", "correct", "accuracy"}, ..., "all": {...}}."""
    examples, answers = list(examples), list(answers)
    if len(examples) != len(answers):
        raise DataError(f"{len(examples)} examples but {len(answers)} answers; give one answer per example")
    scores: dict[str, dict] = {}
    for example, answer in zip(examples, answers):
        ok = check_answer(example["check"], answer)
        for key in (example["check"]["kind"], "all"):
            row = scores.setdefault(key, {"n": 0, "correct": 0})
            row["n"] += 1
            row["correct"] += int(ok)
    for row in scores.values():
        row["accuracy"] = row["correct"] / row["n"]
    return scores
