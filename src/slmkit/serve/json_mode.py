"""JSON mode (`response_format: {"type": "json_object"}`): constrained decoding over the vocabulary.

At every step a token mask allows only the tokens whose bytes keep the output a prefix of a JSON object
(RFC 8259; the top-level value must be an object); once the object closes, only end-of-text is allowed,
so a finished completion always parses with `json.loads`. A completion cut by max_tokens (finish_reason
"length") is a valid prefix but not a whole object, as with OpenAI.

The grammar runs on bytes (a byte-level BPE token may end inside a UTF-8 character), as a small pushdown
automaton: `advance(state, byte)` returns the next state or None. States are immutable tuples
(mode, stack, aux), so the mask for a state is computed once and cached: inside a long string the state
repeats at every step. Runs of whitespace are capped (MAX_WHITESPACE) and nesting is capped (MAX_DEPTH)
so a model cannot stall in them.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch

MAX_WHITESPACE = 16  # consecutive whitespace bytes between tokens of the grammar
MAX_DEPTH = 32  # nested objects / arrays
MASK_CACHE = 512  # masks kept (one per automaton state seen)

WHITESPACE = frozenset(b" \t\n\r")
DIGITS = frozenset(b"0123456789")
HEX = frozenset(b"0123456789abcdefABCDEF")
ESCAPES = frozenset(b'"\\/bfnrtu')
LITERALS = {ord("t"): b"rue", ord("f"): b"alse", ord("n"): b"ull"}
# Number states that may end the number (the next byte then belongs to what follows it).
NUMBER_ENDS = frozenset({"zero", "int", "frac", "exp"})
NUMBER_NEXT = {  # number state -> {byte class: next state}
    "minus": {"0": "zero", "1-9": "int"},
    "zero": {".": "dot", "e": "e"},
    "int": {"0-9": "int", ".": "dot", "e": "e"},
    "dot": {"0-9": "frac"},
    "frac": {"0-9": "frac", "e": "e"},
    "e": {"sign": "esign", "0-9": "exp"},
    "esign": {"0-9": "exp"},
    "exp": {"0-9": "exp"},
}

START = ("start", "", 0)
DONE_MODE = "done"


def _number_class(byte: int) -> list[str]:
    if byte in DIGITS:
        return ["0-9", "0" if byte == ord("0") else "1-9"]
    return {ord("."): ["."], ord("e"): ["e"], ord("E"): ["e"], ord("+"): ["sign"], ord("-"): ["sign"]}.get(byte, [])


def _value_done(stack: str) -> tuple:
    return (DONE_MODE, "", 0) if not stack else ("after", stack, 0)


def _start_value(stack: str, byte: int):
    """A value begins with `byte` (mode expects a value); None if it cannot."""
    if byte == ord("{") or byte == ord("["):
        if len(stack) >= MAX_DEPTH:
            return None
        return ("key_or_close" if byte == ord("{") else "value_or_close", stack + chr(byte), 0)
    if byte == ord('"'):
        return ("string", stack, (False, None, 0))  # (is_key, escape state, UTF-8 bytes owed)
    if byte == ord("-"):
        return ("number", stack, "minus")
    if byte in DIGITS:
        return ("number", stack, "zero" if byte == ord("0") else "int")
    if byte in LITERALS:
        return ("literal", stack, LITERALS[byte])
    return None


def _close(stack: str, byte: int):
    if stack and byte == (ord("}") if stack[-1] == "{" else ord("]")):
        return _value_done(stack[:-1])
    return None


# UTF-8 lead bytes -> (continuation bytes, range of the first one): no overlong forms, no surrogates.
UTF8_LEADS = {**{b: (1, 0x80, 0xBF) for b in range(0xC2, 0xE0)}, 0xE0: (2, 0xA0, 0xBF),
              **{b: (2, 0x80, 0xBF) for b in range(0xE1, 0xF0)}, 0xED: (2, 0x80, 0x9F), 0xF0: (3, 0x90, 0xBF),
              **{b: (3, 0x80, 0xBF) for b in range(0xF1, 0xF4)}, 0xF4: (3, 0x80, 0x8F)}


def _string(state: tuple, byte: int):
    _, stack, (is_key, escape, owed) = state
    if owed:  # inside a multi-byte UTF-8 character: (bytes still owed, range of the next one)
        left, low, high = owed
        if not low <= byte <= high:
            return None
        return ("string", stack, (is_key, None, (left - 1, 0x80, 0xBF) if left > 1 else 0))
    if escape == "\\":
        if byte not in ESCAPES:
            return None
        return ("string", stack, (is_key, 4 if byte == ord("u") else None, 0))
    if isinstance(escape, int):  # inside a \u escape: `escape` is how many hex digits are still to come
        return ("string", stack, (is_key, escape - 1 or None, 0)) if byte in HEX else None
    if byte == ord('"'):
        return ("colon", stack, 0) if is_key else _value_done(stack)
    if byte == ord("\\"):
        return ("string", stack, (is_key, "\\", 0))
    if byte < 0x20:
        return None
    if byte < 0x80:
        return state
    return ("string", stack, (is_key, None, UTF8_LEADS[byte])) if byte in UTF8_LEADS else None


def advance(state: tuple, byte: int):
    """The automaton's state after one more output byte, or None if the output would stop being a JSON
    object's prefix."""
    mode, stack, aux = state
    if mode == "string":
        return _string(state, byte)
    if mode == "number":
        for cls in _number_class(byte):
            if cls in NUMBER_NEXT[aux]:
                return ("number", stack, NUMBER_NEXT[aux][cls])
        if aux not in NUMBER_ENDS:
            return None
        return advance(_value_done(stack), byte)  # the number ended; the byte belongs to what follows
    if mode == "literal":
        if byte != aux[0]:
            return None
        return ("literal", stack, aux[1:]) if len(aux) > 1 else _value_done(stack)
    if mode == DONE_MODE:
        return None
    if byte in WHITESPACE:
        return (mode, stack, aux + 1) if aux < MAX_WHITESPACE else None
    return _structural(mode, stack, byte)


def _structural(mode: str, stack: str, byte: int):
    """Outside strings, numbers and literals: what may come next in `mode`."""
    if mode == "start":
        return ("key_or_close", "{", 0) if byte == ord("{") else None
    if mode in ("key_or_close", "key"):
        if byte == ord('"'):
            return ("string", stack, (True, None, 0))
        return _close(stack, byte) if mode == "key_or_close" else None
    if mode == "colon":
        return ("value", stack, 0) if byte == ord(":") else None
    if mode in ("value", "value_or_close"):
        started = _start_value(stack, byte)
        return started if started is not None or mode == "value" else _close(stack, byte)
    if mode == "after":
        if byte == ord(","):
            return ("key" if stack[-1] == "{" else "value", stack, 0)
        return _close(stack, byte)
    return None


def advance_bytes(state: tuple, data: bytes):
    for byte in data:
        state = advance(state, byte)
        if state is None:
            return None
    return state


class JsonObjectMask:
    """A logits processor: -inf for every token that would break the JSON object (SamplingParams'
    `logits_processors`). Stateless between calls: the state is replayed from the generated ids, so the
    n choices of one request can share it."""

    def __init__(self, tokenizer, eos_ids: set[int]):
        self.tokenizer = tokenizer
        self.eos_ids = sorted(eos_ids)
        special = set(tokenizer.special_tokens.values())
        # Ordinary tokens' bytes; special tokens (and ids without text) are never part of the JSON.
        self.token_bytes = [tokenizer.vocab.get(i) if i not in special else None for i in range(tokenizer.vocab_size)]
        self._masks: OrderedDict[tuple, torch.Tensor] = OrderedDict()

    def state_after(self, generated_ids) -> tuple | None:
        return advance_bytes(START, b"".join(self.token_bytes[i] or b"" for i in generated_ids))

    def allowed(self, state: tuple, width: int) -> torch.Tensor:
        """Bool [width]: the tokens allowed next in `state` (only EOS once the object is complete)."""
        key = (state, width)
        mask = self._masks.get(key)
        if mask is None:
            if state[0] == DONE_MODE:
                ok = [i for i in self.eos_ids if i < width]
            else:
                ok = [i for i, data in enumerate(self.token_bytes[:width])
                      if data and advance_bytes(state, data) is not None]
            mask = torch.zeros(width, dtype=torch.bool)
            mask[torch.tensor(ok, dtype=torch.long)] = True
            self._masks[key] = mask
            if len(self._masks) > MASK_CACHE:
                self._masks.popitem(last=False)
        else:
            self._masks.move_to_end(key)
        return mask

    def __call__(self, logits: torch.Tensor, prompt_ids, generated_ids) -> torch.Tensor:
        state = self.state_after(generated_ids)
        if state is None:  # cannot happen for tokens this mask allowed; end rather than continue broken JSON
            state = (DONE_MODE, "", 0)
        mask = self.allowed(state, logits.shape[-1]).to(logits.device)
        return logits.masked_fill(~mask, -math.inf)
