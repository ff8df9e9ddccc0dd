"""Our byte-level BPE tokenizer <-> GGUF's tokenizer keys (`tokenizer.ggml.*`, model "gpt2").

    keys = tokenizer_keys(tokenizer, n_vocab)     # tokens, token types, merges, pre, bos/eos/pad, add_bos, template
    tokenizer = tokenizer_from_fields(fields)     # the same tokenizer again

Tokens are the tokenizer.json strings (GPT-2's byte-to-unicode form); special tokens are CONTROL, ordinary
ones NORMAL, ids past the tokenizer up to the embedding's rows are "[PAD{i}]" UNUSED (as llama.cpp's
converter pads). llama.cpp knows a pre-tokenizer only by name, so only our three named patterns can be
carried: gpt2 -> "gpt-2", llama3 -> "llama-bpe" (llama.cpp then ignores merges for whole-vocabulary pieces,
so the tokenizer must too), qwen2 -> "qwen2". BOS is never added (add_bos_token false: llama.cpp and
ollama would otherwise default to adding one) and its id is the end-of-text id, so no default id is used.
"""

from __future__ import annotations

from typing import Any

from slmkit.errors import CheckpointError
from slmkit.tokenizer import Tokenizer
from slmkit.tokenizer.byte_unicode import str_to_token, token_to_str
from slmkit.tokenizer.patterns import PATTERNS

PRE_TOKENIZERS = {"gpt2": "gpt-2", "llama3": "llama-bpe", "qwen2": "qwen2"}
_PATTERN_OF_PRE = {pre: name for name, pre in PRE_TOKENIZERS.items()}
NORMAL, CONTROL, UNUSED = 1, 3, 5  # gguf.TokenType


def pattern_name(tokenizer) -> str:
    for name, regex in PATTERNS.items():
        if tokenizer.pattern == regex:
            return name
    raise CheckpointError("GGUF cannot carry this tokenizer: llama.cpp knows pre-tokenizers only by name and its "
                          "regex is custom; train it with pattern gpt2, llama3 or qwen2")


def tokenizer_keys(tokenizer, n_vocab: int) -> dict[str, Any]:
    """The tokenizer.* keys for a model whose embedding has `n_vocab` rows."""
    name = pattern_name(tokenizer)
    if name == "llama3" and not tokenizer.ignore_merges:
        raise CheckpointError("GGUF cannot carry this tokenizer exactly: llama.cpp's llama-bpe pre-tokenizer "
                              "ignores merges for pieces that are whole tokens, and this tokenizer does not "
                              "(ignore_merges=false); train it with pattern qwen2 or gpt2")
    if tokenizer.vocab_size > n_vocab:
        raise CheckpointError(f"the tokenizer has {tokenizer.vocab_size} ids but the model only {n_vocab} rows")
    tokens, types = [], []
    specials = {i: text for text, i in tokenizer.special_tokens.items()}
    for i in range(n_vocab):
        if i in specials:
            tokens.append(specials[i]), types.append(CONTROL)
        elif i in tokenizer.vocab:
            tokens.append(token_to_str(tokenizer.vocab[i])), types.append(NORMAL)
        else:
            tokens.append(f"[PAD{i}]"), types.append(UNUSED)
    if len(set(tokens)) != len(tokens):
        raise CheckpointError("GGUF cannot carry this tokenizer: two ids share one token text, and llama.cpp maps "
                              "each text to a single id")
    strings = {i: token_to_str(b) for i, b in tokenizer.vocab.items()}
    keys: dict[str, Any] = {
        "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": PRE_TOKENIZERS[name],
        "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.merges": [f"{strings[a]} {strings[b]}" for a, b in tokenizer.merges],
        "tokenizer.ggml.add_bos_token": False, "tokenizer.ggml.add_eos_token": False,
    }
    if tokenizer.eos_id is not None:
        keys.update({"tokenizer.ggml.eos_token_id": tokenizer.eos_id, "tokenizer.ggml.bos_token_id": tokenizer.eos_id,
                     "tokenizer.ggml.padding_token_id": tokenizer.eos_id})
    if tokenizer.chat_template:
        keys["tokenizer.chat_template"] = tokenizer.chat_template
    return keys


def tokenizer_from_fields(fields: dict[str, Any]) -> Tokenizer:
    """Our Tokenizer from a GGUF file's tokenizer keys (byte-level BPE with a named pre-tokenizer)."""
    model = fields.get("tokenizer.ggml.model")
    if model != "gpt2":
        raise CheckpointError(f"the GGUF tokenizer is {model!r}; slmkit reads byte-level BPE ('gpt2') tokenizers")
    pre = fields.get("tokenizer.ggml.pre", "default")
    if pre not in _PATTERN_OF_PRE:
        raise CheckpointError(f"the GGUF tokenizer's pre-tokenizer {pre!r} is not one slmkit has "
                              f"({', '.join(sorted(_PATTERN_OF_PRE))})")
    tokens = list(fields["tokenizer.ggml.tokens"])
    types = list(fields.get("tokenizer.ggml.token_type") or [NORMAL] * len(tokens))
    vocab, specials = {}, {}
    for i, (text, kind) in enumerate(zip(tokens, types)):
        if kind == CONTROL or kind == 4:  # control and user-defined tokens are matched whole
            specials[text] = i
        elif kind != UNUSED:
            vocab[i] = str_to_token(text)
    to_id = {token_to_str(b): i for i, b in vocab.items()}
    merges = []
    for merge in fields.get("tokenizer.ggml.merges") or []:
        left, right = merge.split(" ", 1)
        if left not in to_id or right not in to_id:
            raise CheckpointError(f"the GGUF merge {merge!r} names a token that is not in its vocabulary")
        merges.append((to_id[left], to_id[right]))
    eos_id = fields.get("tokenizer.ggml.eos_token_id")
    eos = tokens[eos_id] if isinstance(eos_id, int) and tokens[eos_id] in specials else None
    pattern = _PATTERN_OF_PRE[pre]
    return Tokenizer(vocab, merges, specials, pattern=pattern, chat_template=fields.get("tokenizer.chat_template"),
                     eos_token=eos, ignore_merges=pattern == "llama3")
