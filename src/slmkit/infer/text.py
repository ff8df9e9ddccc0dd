"""Turning generated token ids into text as they arrive: UTF-8-safe deltas and stop strings.

A byte-level BPE token can end in the middle of a multi-byte character; the incremental UTF-8 decoder
holds such bytes back until the character is complete, so a stream never yields half a character.
Stop strings may span tokens, so text that could still become the start of a stop string is held back
(at most the longest stop string minus one character) until it is known not to be one.
"""

from __future__ import annotations

import codecs

from slmkit.errors import TokenizerError


class TextStream:
    """One request's detokenizer. `push(id)` returns the new text that is safe to show."""

    def __init__(self, tokenizer, stop: list[str] | None = None):
        self.tokenizer = tokenizer
        self.stop = list(stop or [])
        self.hold = max((len(s) for s in self.stop), default=1) - 1
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._special = set(getattr(tokenizer, "special_tokens", {}).values()) if tokenizer is not None else set()
        self.text = ""  # everything decoded so far (cut at a stop string once one is found)
        self.emitted = 0  # how much of `text` has been returned
        self.stopped = False  # a stop string was found

    def push(self, token_id: int) -> str:
        if self.stopped or self.tokenizer is None:
            return ""
        if token_id in self._special:
            return self._advance(len(self.text))  # special tokens are not shown (skip_special_tokens)
        self.text += self._utf8.decode(self._bytes(token_id))
        if self.stop:
            # Only a stop string that ends in the newly added text can be new.
            search_from = max(0, self.emitted - self.hold)
            hits = [i for i in (self.text.find(s, search_from) for s in self.stop) if i >= 0]
            if hits:
                self.text = self.text[:min(hits)]
                self.stopped = True
                return self._advance(len(self.text))
        return self._advance(len(self.text) - self.hold)

    def _bytes(self, token_id: int) -> bytes:
        # A model's vocabulary may be padded past its tokenizer's (rows no text maps to); such an id
        # shows nothing rather than failing the request.
        try:
            return self.tokenizer.id_to_bytes(token_id)
        except TokenizerError:
            return b""

    def finish(self) -> str:
        """The text held back so far (call once, when the request ends)."""
        if not self.stopped and self.tokenizer is not None:
            self.text += self._utf8.decode(b"", final=True)
        return self._advance(len(self.text))

    def _advance(self, end: int) -> str:
        if end <= self.emitted:
            return ""
        delta = self.text[self.emitted:end]
        self.emitted = end
        return delta
