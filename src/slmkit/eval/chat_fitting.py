"""Fitting a prompt and its reply into a model's context window: the same rule in process and over HTTP.

A reply keeps room for at least `reply_reserve(window, max_new_tokens)` = min(max_new_tokens, window // 4)
tokens (at least one), so a prompt may use `prompt_room(window, max_new_tokens)` tokens; a longer prompt is
cut from its start, and the reply then runs until max_new_tokens or the window's end, whichever comes
first. In process the cut drops the first tokens of the rendered prompt; over HTTP, where only the server
renders the chat template, `cut_conversation` drops the start of the first non-system message instead, so
the template stays whole. The question a user asks is at the end of a conversation, and survives both.
"""

from __future__ import annotations


def reply_reserve(window: int, max_new_tokens: int) -> int:
    return max(1, min(max_new_tokens, window // 4))


def prompt_room(window: int, max_new_tokens: int) -> int:
    """The most prompt tokens that leave the reply its reserve."""
    return max(1, window - reply_reserve(window, max_new_tokens))


def cut_conversation(messages: list[dict], keep_fraction: float) -> list[dict]:
    """The conversation with the start of its first non-system message cut to about `keep_fraction` of its
    characters (a message cut to nothing is dropped while later ones remain)."""
    messages = [dict(m) for m in messages]
    first = next((k for k, m in enumerate(messages) if m.get("role") != "system"), 0)
    content = str(messages[first].get("content") or "")
    keep = int(len(content) * min(1.0, max(0.0, keep_fraction)) * 0.95)  # tokens are not spread evenly
    if keep < 1 and first < len(messages) - 1:
        return messages[:first] + messages[first + 1:]
    messages[first]["content"] = content[len(content) - max(1, keep):]
    return messages
