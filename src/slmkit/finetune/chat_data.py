"""Chat SFT data: conversations from local JSONL / JSON files or Hugging Face datasets.

    conversations = load_sft_examples("data/sft.jsonl")                   # [[{"role", "content"}, ...], ...]
    conversations = load_sft_examples("hf:HuggingFaceH4/no_robots", split="train", limit=1000)
    examples = tokenize_conversations(tok, conversations)                  # assistant_mask.py

A record is a JSON object with either
- `messages`: [{"role": "system" | "user" | "assistant" | "tool", "content": str, ...}, ...] with at least one
  assistant turn (other keys of a message, e.g. `reasoning_content`, reach the chat template), or
- `prompt` and `completion`: two strings (-> a user and an assistant message), or two lists of messages
  (TRL's conversational prompt-completion format, concatenated), or
- `conversations`: ShareGPT's [{"from": "system" | "human" | "gpt" | "tool", "value": str}, ...] (also "user",
  "assistant", "function_call", "observation"), mapped to role/content.
Other keys of a record (an id, a `check` for held-out scoring) are ignored. A `.jsonl` file holds one record
per line (blank lines skipped); a `.json` file holds a list of records, or an object mapping split names to
lists. `hf:NAME[:CONFIG]`, or a hub id `owner/name` that is not a local path, is read with `datasets`.
A bad record is a DataError naming the file, the line (or record) and what is wrong.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from slmkit.data.sources.hub import hub_reachable
from slmkit.errors import DataError

ROLES = ("system", "user", "assistant", "tool")
HUB_PREFIX = "hf:"
_LOCAL_HINT = ("or give a local .jsonl file with one {\"messages\": [...]}, {\"prompt\", \"completion\"} or "
               "ShareGPT {\"conversations\": [...]} record per line")


def load_sft_examples(source: str, split: str = "train", limit: int | None = None) -> list[list[dict]]:
    """Conversations (lists of messages) from `source`, at most `limit` of them, in file order."""
    records = read_records(source, split, limit)
    conversations = []
    for where, record in records:
        if limit is not None and len(conversations) >= limit:
            break
        conversations.append(record_to_messages(record, where))
    if not conversations:
        raise DataError(f"{source} holds no SFT records{f' in split {split!r}' if split else ''}")
    return conversations


def read_records(source: str, split: str = "train", limit: int | None = None, what: str = "SFT data",
                 hint: str = _LOCAL_HINT) -> Iterable[tuple[str, object]]:
    """(where, record) for each record of a .jsonl/.json file or a hub dataset (`hf:NAME[:CONFIG]` or
    `owner/name`); `what` and `hint` go into the errors (not found, offline, bad JSON)."""
    source = str(source)
    path = Path(source)
    if source.startswith(HUB_PREFIX) or (not path.exists() and _looks_like_hub_id(source)):
        name, _, config = source.removeprefix(HUB_PREFIX).partition(":")
        return _hub_records(name, config or None, split, limit, hint)
    if path.is_file():
        return _file_records(path, split, what)
    raise DataError(f"{what} not found: {source} (give a .jsonl/.json file, or hf:NAME[:CONFIG] for a hub dataset)")


def record_to_messages(record, where: str) -> list[dict]:
    """One record -> its messages, checked; `where` ("file.jsonl line 3") starts every error."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: a record must be a JSON object, not {type(record).__name__}")
    if "messages" in record:
        messages = record["messages"]
    elif "prompt" in record and "completion" in record:
        messages = _prompt_completion(record["prompt"], record["completion"], where)
    elif "conversations" in record:
        messages = _sharegpt_messages(record["conversations"], where)
    else:
        raise DataError(f"{where}: missing 'messages' (or 'prompt' and 'completion', or ShareGPT 'conversations'); "
                        f"keys: {sorted(record)[:8]}")
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: 'messages' must be a non-empty list of {{\"role\", \"content\"}} objects")
    for k, message in enumerate(messages):
        check_message(message, f"{where} message {k}")
    if not any(m["role"] == "assistant" for m in messages):
        raise DataError(f"{where}: no assistant turn, so nothing to train on")
    return [dict(m) for m in messages]


def _prompt_completion(prompt, completion, where: str) -> list[dict]:
    if isinstance(prompt, str) and isinstance(completion, str):
        return [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]
    if isinstance(prompt, list) and isinstance(completion, list):
        return prompt + completion
    raise DataError(f"{where}: 'prompt' and 'completion' must be two strings or two lists of messages")


# ShareGPT speaker names -> chat roles (ShareGPT, LLaMA-Factory's and Axolotl's sharegpt formats).
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "chatgpt": "assistant", "bing": "assistant", "bard": "assistant", "tool": "tool",
                  "function_call": "assistant", "observation": "tool", "function": "tool"}


def _sharegpt_messages(turns, where: str) -> list[dict]:
    if not isinstance(turns, list) or not turns:
        raise DataError(f"{where}: 'conversations' must be a non-empty list of {{\"from\", \"value\"}} objects")
    messages = []
    for k, turn in enumerate(turns):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise DataError(f"{where} turn {k}: a ShareGPT turn needs 'from' and 'value'")
        role = SHAREGPT_ROLES.get(str(turn["from"]).lower())
        if role is None:
            raise DataError(f"{where} turn {k}: unknown ShareGPT speaker {turn['from']!r} "
                            f"(expected one of {', '.join(sorted(SHAREGPT_ROLES))})")
        messages.append({"role": role, "content": turn["value"]})
    return messages


def check_message(message, where: str) -> None:
    if not isinstance(message, dict) or "role" not in message or "content" not in message:
        raise DataError(f"{where}: a message needs 'role' and 'content'")
    if message["role"] not in ROLES:
        raise DataError(f"{where}: unknown role {message['role']!r} (expected one of {', '.join(ROLES)})")
    if not isinstance(message["content"], str):
        raise DataError(f"{where}: 'content' must be a string, not {type(message['content']).__name__}")


def _looks_like_hub_id(source: str) -> bool:
    parts = source.split("/")
    return len(parts) == 2 and all(parts) and not source.endswith((".json", ".jsonl")) and not source.startswith(".")


def _file_records(path: Path, split: str, what: str) -> Iterable[tuple[str, object]]:
    if path.suffix == ".jsonl":
        return _jsonl_records(path)
    if path.suffix == ".json":
        return _json_records(path, split)
    raise DataError(f"{path}: {what} must be .jsonl or .json (got {path.suffix or 'no extension'})")


def _jsonl_records(path: Path) -> Iterable[tuple[str, object]]:
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path} line {number}: not valid JSON ({e.msg} at column {e.colno})") from None
            yield f"{path} line {number}", record


def _json_records(path: Path, split: str) -> Iterable[tuple[str, object]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if isinstance(data, dict):
        if not isinstance(data.get(split), list):
            raise DataError(f"{path}: no list of records under split {split!r} (keys: {sorted(data)[:8]})")
        data = data[split]
    if not isinstance(data, list):
        raise DataError(f"{path}: a .json file must hold a list of records (or an object of split -> list)")
    return ((f"{path} record {k}", record) for k, record in enumerate(data))


def _hub_records(name: str, config: str | None, split: str, limit: int | None,
                 hint: str) -> Iterable[tuple[str, object]]:
    label = f"hf:{name}{f':{config}' if config else ''} ({split})"
    try:
        from datasets import load_dataset  # optional dependency
    except ImportError:
        raise DataError(f"{label}: reading hub datasets needs the 'datasets' package (pip install 'slmkit[hf]'), "
                        + hint) from None
    offline_mode = any(os.environ.get(v, "").lower() in ("1", "true", "yes")
                       for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    if not offline_mode and not hub_reachable():
        raise DataError(f"{label}: the Hugging Face hub is unreachable (offline?); download the dataset where it is "
                        f"reachable (it is then cached), {hint}")
    try:
        dataset = load_dataset(name, config, split=split)
    except Exception as e:  # datasets raises many types (connection, not found, missing split, cache miss)
        raise DataError(f"{label}: could not load it ({type(e).__name__}: {' '.join(str(e).split())[:200]}); "
                        + hint) from None
    count = len(dataset) if limit is None else min(limit, len(dataset))
    return ((f"{label} row {k}", dataset[k]) for k in range(count))
