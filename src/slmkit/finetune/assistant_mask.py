"""A conversation -> token ids and the assistant-only loss mask.

    example = tokenize_chat(tok, [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}])
    example.ids          # the rendered conversation's ids
    example.train_mask   # True where the token is a target of the loss: what the assistant writes

What is trained: every assistant turn's text as the template renders it after the generation prompt,
up to and including its end-of-turn text. For ChatML (Qwen3, the default template) the mask covers the
content and "<|im_end|>\n" but not "<|im_start|>assistant\n" (TRL's qwen3_training.jinja span), so the
model learns to end its turn; Qwen3's empty "<think>\n\n</think>\n\n" block on a final turn is inside
the span too, because at inference the model writes it after the generation prompt.

How the spans are found (character offsets into the rendered conversation):
1. A template with `{% generation %}...{% endgeneration %}` markers: the marked blocks.
2. Otherwise, from the rendered turns. For assistant message k, `messages[:k]` renders to a prefix of the
   whole conversation, and with the generation prompt to that prefix + header: the span starts after the
   header. It ends where `messages[:k + 1]` ends, when that is also a prefix of the whole. Qwen3's real
   template is not prefix-stable there (only the last turn gets the empty think block), so then the turn
   as rendered last is matched against the whole conversation at the span's start: the longest tail of it
   found there is the turn's text in the whole conversation.
Spans map to tokens by byte offsets: a token is a target when any of its bytes lies in a span (as HF's
`return_assistant_tokens_mask`). A token that crosses a span's start (content starting with "\n" after a
header ending in "\n" merges into one "\n\n" token) is counted in `SFTExample.straddled`: its prompt then
tokenizes differently at inference than in training.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from slmkit.errors import DataError, TokenizerError
from slmkit.tokenizer.chat_template import has_generation_markers, render_chat, render_chat_with_spans


@dataclass
class SFTExample:
    """One tokenized conversation: ids [n] and train_mask [n] (True = a target of the loss)."""

    ids: list[int]
    train_mask: list[bool]
    straddled: int = 0  # assistant spans whose first token also holds text before the span

    @property
    def num_targets(self) -> int:
        return sum(self.train_mask)


def tokenize_chat(tokenizer, messages: list[dict], index: int | str | None = None,
                  context_turns: int = 0) -> SFTExample:
    """Render `messages` with the tokenizer's chat template and mask everything but the assistant's text.

    context_turns: the first this many assistant turns are context, not targets (a preference pair's
    prompt may hold earlier assistant replies; only the completion is scored).
    Raises DataError naming the example (`index`: a number, or a label such as "pair 3 chosen") when no
    token is an assistant target, and TokenizerError when the tokenizer has no chat template (see
    with_default_chat_template).
    """
    where = (f"example {index}" if isinstance(index, int) else index) if index is not None else "the conversation"
    if not getattr(tokenizer, "chat_template", None):
        raise TokenizerError("assistant-only loss needs a chat template; this tokenizer has none: use "
                             "slmkit.tokenizer.chat_template.with_default_chat_template(tokenizer) (ChatML)")
    if getattr(tokenizer, "normalize", None):
        # render normalized text, so the ids spell the rendered text byte for byte
        messages = [{**m, "content": unicodedata.normalize(tokenizer.normalize, m["content"])} for m in messages]
    text, spans = assistant_char_spans(tokenizer, messages, where)
    spans = spans[context_turns:]
    ids = tokenizer.encode(text)
    ends = _token_byte_ends(tokenizer, ids)
    raw = text.encode("utf-8")
    if not ends or ends[-1] != len(raw):
        raise DataError(f"{where}: its ids do not spell the rendered text ({len(raw)} bytes vs "
                        f"{ends[-1] if ends else 0}); the tokenizer changes this text (normalisation)")
    byte_spans = [(len(text[:s].encode("utf-8")), len(text[:e].encode("utf-8"))) for s, e in spans]
    mask, straddled = _mask_from_byte_spans(ends, byte_spans)
    if not any(mask):
        raise DataError(f"{where} has no assistant token to train on: it needs an assistant message with content, "
                        "and a chat template that renders it")
    return SFTExample(ids, mask, straddled)


def tokenize_conversations(tokenizer, conversations: Iterable[list[dict]]) -> list[SFTExample]:
    """tokenize_chat over a data set; an error names the conversation's index."""
    return [tokenize_chat(tokenizer, messages, index=i) for i, messages in enumerate(conversations)]


def assistant_char_spans(tokenizer, messages: list[dict], where: str = "the conversation") -> tuple[str, list[tuple[int, int]]]:
    """(text, spans): the conversation rendered without a generation prompt and the [start, end) character
    span of each assistant turn's trained text (see the module docstring for how they are found)."""
    if has_generation_markers(tokenizer.chat_template):
        text, spans = render_chat_with_spans(tokenizer, messages, add_generation_prompt=False)
        return text, [(s, e) for s, e in spans if e > s]
    full = _render(tokenizer, messages, False, where)
    spans = []
    for k, message in enumerate(messages):
        if message["role"] == "assistant":
            spans.append(_turn_span(tokenizer, messages, k, full, where))
    return full, spans


def _turn_span(tokenizer, messages: list[dict], k: int, full: str, where: str) -> tuple[int, int]:
    before = _render(tokenizer, messages[:k], False, where) if k else ""
    prompt = _render(tokenizer, messages[:k], True, where) if k else _generation_prompt_alone(tokenizer, where)
    if not (full.startswith(before) and prompt.startswith(before) and full.startswith(prompt)):
        raise _unsupported(where, k, "the conversation before it does not render as a prefix of the whole")
    start = len(prompt)
    upto = _render(tokenizer, messages[:k + 1], False, where)
    if full.startswith(upto):
        return start, len(upto)
    if not upto.startswith(prompt):
        raise _unsupported(where, k, "rendered as the last turn it does not start with the generation prompt")
    turn = upto[start:]
    for cut in range(len(turn)):  # the longest tail of the turn (as rendered last) found at `start`
        tail = turn[cut:]
        if full.startswith(tail, start):
            if messages[k]["content"].strip() and _visible_end(messages[k]["content"]) not in tail:
                break
            return start, start + len(tail)
    raise _unsupported(where, k, "its text differs when it is not the last turn")


def _generation_prompt_alone(tokenizer, where: str) -> str:
    """The generation prompt of an empty conversation (an assistant turn that opens the chat)."""
    return _render(tokenizer, [], True, where)


def _visible_end(content: str) -> str:
    # what any template keeps of an assistant message: the end of its text after a reasoning block
    return content.split("</think>")[-1].strip()[-32:]


def _render(tokenizer, messages: list[dict], add_generation_prompt: bool, where: str) -> str:
    try:
        return render_chat(tokenizer, messages, add_generation_prompt)
    except TokenizerError as e:
        raise DataError(f"{where}: {e}") from None


def _unsupported(where: str, k: int, why: str) -> DataError:
    return DataError(f"{where}: cannot find assistant message {k} in the rendered chat ({why}); give the "
                     "tokenizer a template with {% generation %}...{% endgeneration %} around the assistant's text")


def _token_byte_ends(tokenizer, ids: list[int]) -> list[int]:
    ends, total = [], 0
    for i in ids:
        total += len(tokenizer.id_to_bytes(i))
        ends.append(total)
    return ends


def _mask_from_byte_spans(ends: list[int], spans: list[tuple[int, int]]) -> tuple[list[bool], int]:
    """A token [previous end, end) is a target when it overlaps a span; also count spans whose first
    token starts before the span."""
    mask = [False] * len(ends)
    straddled, t = 0, 0
    for s, e in spans:
        while t < len(ends) and ends[t] <= s:  # tokens wholly before the span
            t += 1
        first = True
        while t < len(ends) and (ends[t - 1] if t else 0) < e:
            if first and (ends[t - 1] if t else 0) < s:
                straddled += 1
            first = False
            mask[t] = True
            t += 1
    return mask, straddled
