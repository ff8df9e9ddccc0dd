"""Preference data: (prompt, chosen, rejected) from local JSONL / JSON files or Hugging Face datasets.

    pairs = load_preference_pairs("data/prefs.jsonl")                       # [PreferencePair, ...]
    pairs = load_preference_pairs("hf:trl-lib/ultrafeedback_binarized", limit=2000)

A record is a JSON object in one of TRL's preference formats:
- standard: `prompt`, `chosen`, `rejected` strings (-> a user message and two assistant replies);
- conversational, explicit prompt: `prompt` a list of messages, `chosen` and `rejected` lists of messages (the
  completions, usually one assistant message each);
- conversational, implicit prompt: only `chosen` and `rejected`, two whole conversations; their longest common
  first messages are the prompt (Anthropic HH in message form).
A completion must hold an assistant message: what DPO scores is what the assistant writes (the chat template's
assistant spans, as for SFT). An optional numeric `margin` (TRL's reward-modelling column) says how strongly
chosen is preferred. Other keys (`flaw`, `check`, an id) are ignored. Errors name the file and line.
"""

from __future__ import annotations

from dataclasses import dataclass

from slmkit.errors import DataError
from slmkit.finetune.chat_data import check_message, read_records

_HINT = ("or give a local .jsonl file with one {\"prompt\", \"chosen\", \"rejected\"} record per line "
         "(strings, or lists of {\"role\", \"content\"} messages)")


@dataclass
class PreferencePair:
    """One preference: the conversation so far and two assistant continuations, chosen preferred."""

    prompt: list[dict]
    chosen: list[dict]
    rejected: list[dict]
    margin: float = 0.0  # how strongly chosen is preferred (a record's optional `margin`; reward models use it)


def load_preference_pairs(source: str, split: str = "train", limit: int | None = None) -> list[PreferencePair]:
    """Pairs from `source` (a .jsonl/.json file, or hf:NAME[:CONFIG]), at most `limit`, in file order."""
    pairs = []
    for where, record in read_records(source, split, limit, what="preference data", hint=_HINT):
        if limit is not None and len(pairs) >= limit:
            break
        pairs.append(record_to_pair(record, where))
    if not pairs:
        raise DataError(f"{source} holds no preference records{f' in split {split!r}' if split else ''}")
    return pairs


def record_to_pair(record, where: str) -> PreferencePair:
    """One record -> its PreferencePair, checked; `where` ("file.jsonl line 3") starts every error."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: a record must be a JSON object, not {type(record).__name__}")
    if "chosen" not in record or "rejected" not in record:
        raise DataError(f"{where}: a preference record needs 'chosen' and 'rejected' (and usually 'prompt'); "
                        f"keys: {sorted(record)[:8]}")
    chosen, rejected = record["chosen"], record["rejected"]
    if "prompt" in record:
        prompt = record["prompt"]
        if isinstance(prompt, str) and isinstance(chosen, str) and isinstance(rejected, str):
            pair = PreferencePair([{"role": "user", "content": prompt}], [_assistant(chosen)], [_assistant(rejected)])
        elif isinstance(prompt, list) and isinstance(chosen, list) and isinstance(rejected, list):
            pair = PreferencePair(prompt, chosen, rejected)
        else:
            raise DataError(f"{where}: 'prompt', 'chosen' and 'rejected' must be three strings or three lists of messages")
    elif isinstance(chosen, list) and isinstance(rejected, list):
        pair = _split_implicit_prompt(chosen, rejected, where)
    else:
        raise DataError(f"{where}: without a 'prompt', 'chosen' and 'rejected' must be whole conversations "
                        "(lists of messages); plain strings need a 'prompt' beside them")
    _check_pair(pair, where)
    margin = record.get("margin", 0.0)
    if isinstance(margin, bool) or not isinstance(margin, (int, float)):
        raise DataError(f"{where}: 'margin' must be a number, got {margin!r}")
    pair.margin = float(margin)
    return pair


def _assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


def _split_implicit_prompt(chosen: list, rejected: list, where: str) -> PreferencePair:
    shared = 0
    while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
        shared += 1
    if shared == 0:
        raise DataError(f"{where}: 'chosen' and 'rejected' share no first message, so there is no prompt; give a "
                        "'prompt' key")
    return PreferencePair(list(chosen[:shared]), list(chosen[shared:]), list(rejected[shared:]))


def _check_pair(pair: PreferencePair, where: str) -> None:
    for part in ("prompt", "chosen", "rejected"):
        for k, message in enumerate(getattr(pair, part)):
            check_message(message, f"{where} {part} message {k}")
    for part in ("chosen", "rejected"):
        messages = getattr(pair, part)
        if not any(m["role"] == "assistant" for m in messages):
            raise DataError(f"{where}: '{part}' has no assistant message, so nothing of it is scored")
    if not pair.prompt:
        raise DataError(f"{where}: the prompt is empty; a preference needs something the replies answer")
