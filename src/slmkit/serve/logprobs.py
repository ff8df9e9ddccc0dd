"""What one choice collected from the scheduler, and its log-probs in OpenAI's two response shapes.

Completions (legacy, what lm-eval's local-completions reads):

    {"tokens": [str], "token_logprobs": [float|null], "top_logprobs": [{str: float}|null], "text_offset": [int]}

With echo, the lists cover every prompt token (the first has no context: logprob and top dict null)
and then every sampled token, so a prompt of P tokens with max_tokens 1 gives P + 1 entries; without
echo, only the sampled tokens. A sampled end-of-text token is listed too (it adds no text), so the
entry count never depends on what was sampled. Each position's dict holds the N most likely tokens
and always the token actually there, so a client can tell whether that token was the greedy choice.
Keys are the tokens' text (two tokens with the same text keep the larger log-prob); text_offset is
each token's character offset in the choice's `text`.

Chat (`choices[i].logprobs.content`): [{"token", "logprob", "bytes", "top_logprobs": [{"token",
"logprob", "bytes"}] * N}] for each sampled token.

Log-probs are the model's raw float32 log-softmax (infer/logprobs.py): before penalties, temperature
and truncation, as vLLM reports them.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field

from slmkit.errors import TokenizerError
from slmkit.infer.logprobs import TokenLogprob

# JSON has no -Infinity; a token the model rules out entirely (a padded vocabulary row) reports this.
LOGPROB_FLOOR = -9999.0


@dataclass
class ChoiceResult:
    """One choice as its events arrive: text deltas, log-probs, and how it ended."""

    text: str = ""
    finish_reason: str | None = None
    completion_tokens: int = 0
    prompt_logprobs: list[TokenLogprob] | None = None
    token_logprobs: list[TokenLogprob] = field(default_factory=list)

    def apply(self, event: tuple) -> bool:
        """Take one ("delta" | "logprob" | "prompt_logprobs" | "done", index, ...) event; True when done."""
        kind = event[0]
        if kind == "delta":
            self.text += event[2]
        elif kind == "logprob":
            self.token_logprobs.append(event[2])
        elif kind == "prompt_logprobs":
            self.prompt_logprobs = event[2]
        elif kind == "done":
            self.finish_reason, self.completion_tokens = event[2], event[3]
            return True
        return False


def token_text(tokenizer, token_id: int) -> str:
    """A token's text for display (partial UTF-8 as \\x escapes); `token_id:N` for an id without text
    (no tokenizer, or a row of a vocabulary padded beyond the tokenizer's)."""
    if token_bytes(tokenizer, token_id) is None:
        return f"token_id:{token_id}"
    return tokenizer.token_pieces([token_id])[0]


def token_bytes(tokenizer, token_id: int) -> bytes | None:
    try:
        return tokenizer.id_to_bytes(token_id) if tokenizer is not None else None
    except TokenizerError:
        return None


def prompt_text(tokenizer, prompt_ids: list[int]) -> str:
    """What echo puts before the completion: the prompt's tokens decoded (ids without text add none)."""
    pieces = [token_bytes(tokenizer, i) for i in prompt_ids]
    return b"".join(b for b in pieces if b is not None).decode("utf-8", errors="replace")


def legacy_logprobs(tokenizer, prompt_ids: list[int], result: ChoiceResult, echo: bool, text_len: int) -> dict:
    ids: list[int] = []
    token_lps: list[float | None] = []
    tops: list[dict | None] = []
    if echo:
        ids.append(prompt_ids[0])
        token_lps.append(None)
        tops.append(None)
    entries = (result.prompt_logprobs or []) if echo else []
    for entry in entries + result.token_logprobs:
        ids.append(entry.token_id)
        token_lps.append(_finite(entry.logprob))
        tops.append(_top_dict(tokenizer, entry))
    shown_prompt = len(prompt_ids) if echo else 0
    return {"tokens": [token_text(tokenizer, i) for i in ids], "token_logprobs": token_lps, "top_logprobs": tops,
            "text_offset": _text_offsets(tokenizer, ids, shown_prompt, text_len)}


def chat_logprobs(tokenizer, result: ChoiceResult) -> dict:
    def item(token_id: int, logprob: float) -> dict:
        raw = token_bytes(tokenizer, token_id)
        return {"token": token_text(tokenizer, token_id), "logprob": _finite(logprob),
                "bytes": list(raw) if raw is not None else None}

    content = [{**item(e.token_id, e.logprob), "top_logprobs": [item(i, lp) for i, lp in e.top]}
               for e in result.token_logprobs]
    return {"content": content, "refusal": None}


def _top_dict(tokenizer, entry: TokenLogprob) -> dict[str, float]:
    top: dict[str, float] = {}
    for token_id, logprob in entry.top + [(entry.token_id, entry.logprob)]:  # the token itself, always
        key = token_text(tokenizer, token_id)
        top[key] = max(top.get(key, LOGPROB_FLOOR), _finite(logprob))
    return top


def _text_offsets(tokenizer, ids: list[int], n_prompt: int, text_len: int) -> list[int]:
    """Each token's start in the choice's text: prompt tokens decode as echo shows them; generated
    special tokens add nothing (the text skips them)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    special = set(getattr(tokenizer, "special_tokens", {}).values())
    offsets, length = [], 0
    for k, token_id in enumerate(ids):
        offsets.append(min(length, text_len))
        raw = token_bytes(tokenizer, token_id)
        if raw is not None and not (k >= n_prompt and token_id in special):
            length += len(decoder.decode(raw))
    return offsets


def _finite(logprob: float) -> float:
    return max(logprob, LOGPROB_FLOOR)
