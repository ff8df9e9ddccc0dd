"""Prompts for RL: what the policy answers in its rollouts, with what the rule rewards check.

    prompts = load_prompts("data/sft.heldout.jsonl")     # [PromptRecord(messages, check), ...]

A record is a JSON object with `prompt` (a string -> one user message, or a list of messages) or `messages` (a
conversation; a final assistant turn, the SFT data's reference answer, is dropped), and an optional `check` (the
synthetic instruction data's, read by the `story` rule). Files, `hf:NAME[:CONFIG]` datasets and errors as for SFT.
"""

from __future__ import annotations

from dataclasses import dataclass

from slmkit.errors import DataError
from slmkit.finetune.chat_data import check_message, read_records

_HINT = "or give a local .jsonl file with one {\"prompt\": ...} or {\"messages\": [...]} record per line"


@dataclass
class PromptRecord:
    messages: list[dict]
    check: dict | None = None


def record_to_prompt(record, where: str) -> PromptRecord:
    if not isinstance(record, dict):
        raise DataError(f"{where}: a record must be a JSON object, not {type(record).__name__}")
    if "prompt" in record:
        prompt = record["prompt"]
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    elif "messages" in record:
        messages = record["messages"]
        if isinstance(messages, list) and messages and isinstance(messages[-1], dict) \
                and messages[-1].get("role") == "assistant":
            messages = messages[:-1]
    else:
        raise DataError(f"{where}: a prompt record needs 'prompt' or 'messages'; keys: {sorted(record)[:8]}")
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: the prompt must be a string or a non-empty list of messages")
    for k, message in enumerate(messages):
        check_message(message, f"{where} message {k}")
    check = record.get("check")
    if check is not None and not isinstance(check, dict):
        raise DataError(f"{where}: 'check' must be an object")
    return PromptRecord([dict(m) for m in messages], check)


def load_prompts(source: str, split: str = "train", limit: int | None = None) -> list[PromptRecord]:
    prompts = []
    for where, record in read_records(source, split, limit, what="prompt data", hint=_HINT):
        if limit is not None and len(prompts) >= limit:
            break
        prompts.append(record_to_prompt(record, where))
    if not prompts:
        raise DataError(f"{source} holds no prompt records")
    return prompts
