"""The byte-level BPE tokenizer: encoding by merge rank, decoding, special tokens.

A tokenizer is a vocabulary (id -> bytes), an ordered list of merges (pairs of ids; earlier
merges win), special tokens that are never split, and a pre-tokenization regex. Text is split on
special tokens first, then into pre-tokens by the regex, and each pre-token's bytes are merged
independently; pre-token results are cached because natural text repeats words constantly.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Iterable, Iterator

from slmkit.errors import TokenizerError
from slmkit.tokenizer.chat_template import render_chat
from slmkit.tokenizer.hf_writer import save_tokenizer, tokenizer_json
from slmkit.tokenizer.parallel import encode_in_processes
from slmkit.tokenizer.patterns import resolve_pattern
from slmkit.tokenizer.pretokenize import compile_pattern, last_safe_cut, special_splitter, split_on_specials

CACHE_LIMIT = 200_000


class Tokenizer:
    """Byte-level BPE.

    vocab: id -> token bytes (ordinary tokens; every single byte must be present)
    merges: [(left_id, right_id), ...] in priority order; merge i yields the token left+right
    special_tokens: text -> id, matched before pre-tokenization and never merged into
    pattern: pre-tokenization regex (or a name: 'gpt2', 'llama3', 'qwen2')
    normalize: 'NFC' to normalise ordinary text first (Qwen's tokenizer does), or None
    eos_token: the special token that ends a document (default: <|endoftext|> when present)
    """

    def __init__(
        self,
        vocab: dict[int, bytes],
        merges: list[tuple[int, int]],
        special_tokens: dict[str, int] | None = None,
        pattern: str = "gpt2",
        normalize: str | None = None,
        chat_template: str | None = None,
        eos_token: str | None = None,
        ignore_merges: bool = False,
    ):
        self.vocab = dict(vocab)
        self.merges = list(merges)
        self.special_tokens = dict(special_tokens or {})
        self.pattern = resolve_pattern(pattern)
        self.normalize = normalize
        self.chat_template = chat_template
        # Llama 3 style: a pre-token that is itself a vocabulary entry maps straight to it.
        self.ignore_merges = ignore_merges
        self.eos_token = eos_token if eos_token is not None else self._default_eos()
        self._check()
        self._regex = compile_pattern(self.pattern)
        self._splitter = special_splitter(self.special_tokens)
        self._byte_ids = self._single_byte_ids()
        self._ranks = {pair: rank for rank, pair in enumerate(self.merges)}
        self._merge_result = self._merge_results()
        self._whole_tokens = {b: i for i, b in self.vocab.items()} if ignore_merges else {}
        self._id_to_special = {i: s for s, i in self.special_tokens.items()}
        self._cache: dict[str, tuple[int, ...]] = {}
        self._fast = None  # a `tokenizers.Tokenizer` built lazily for bulk encoding

    # ----------------------------------------------------------------- construction helpers

    def _default_eos(self) -> str | None:
        for name in ("<|endoftext|>", "</s>", "<|im_end|>", "<eos>"):
            if name in self.special_tokens:
                return name
        return None

    def _check(self) -> None:
        ids = set(self.vocab)
        for text, i in self.special_tokens.items():
            if i in ids and self.vocab[i] != text.encode("utf-8"):
                raise TokenizerError(f"special token {text!r} reuses id {i} of an ordinary token")
        if self.eos_token is not None and self.eos_token not in self.special_tokens:
            raise TokenizerError(f"eos token {self.eos_token!r} is not one of the special tokens")

    def _single_byte_ids(self) -> list[int]:
        by_bytes = {}
        for i, token in self.vocab.items():
            if len(token) == 1:
                by_bytes.setdefault(token, i)
        missing = [b for b in range(256) if bytes([b]) not in by_bytes]
        if missing:
            raise TokenizerError(f"vocabulary lacks {len(missing)} single-byte tokens (first: byte {missing[0]})")
        return [by_bytes[bytes([b])] for b in range(256)]

    def _merge_results(self) -> dict[tuple[int, int], int]:
        bytes_to_id: dict[bytes, int] = {}
        for i in sorted(self.vocab):
            bytes_to_id.setdefault(self.vocab[i], i)
        result = {}
        for left, right in self.merges:
            merged = self.vocab[left] + self.vocab[right]
            if merged not in bytes_to_id:
                raise TokenizerError(f"merge ({left}, {right}) yields {merged!r}, which is not in the vocabulary")
            result[(left, right)] = bytes_to_id[merged]
        return result

    # ----------------------------------------------------------------- properties

    @property
    def vocab_size(self) -> int:
        """Number of ids, ordinary and special (the size an embedding table needs)."""
        return max(max(self.vocab), max(self.special_tokens.values(), default=-1)) + 1

    @property
    def eos_id(self) -> int | None:
        return self.special_tokens.get(self.eos_token) if self.eos_token else None

    def id_to_bytes(self, i: int) -> bytes:
        if i in self.vocab:
            return self.vocab[i]
        if i in self._id_to_special:
            return self._id_to_special[i].encode("utf-8")
        raise TokenizerError(f"token id {i} is outside the vocabulary (size {self.vocab_size})")

    def fingerprint(self) -> str:
        """A short hash of what decides the ids: vocabulary, merges, specials, pattern, normaliser."""
        h = hashlib.sha256()
        h.update(json.dumps([self.pattern, self.normalize, sorted(self.special_tokens.items())]).encode())
        for i in sorted(self.vocab):
            h.update(i.to_bytes(4, "little") + len(self.vocab[i]).to_bytes(2, "little") + self.vocab[i])
        for left, right in self.merges:
            h.update(left.to_bytes(4, "little") + right.to_bytes(4, "little"))
        return h.hexdigest()[:16]

    # ----------------------------------------------------------------- encoding

    def _bpe(self, piece: str) -> tuple[int, ...]:
        """Merge one pre-token's bytes: repeatedly merge the adjacent pair of lowest rank."""
        raw = piece.encode("utf-8")
        if raw in self._whole_tokens:
            return (self._whole_tokens[raw],)
        ids = [self._byte_ids[b] for b in raw]
        ranks = self._ranks
        while len(ids) > 1:
            best_rank, best_at = None, -1
            for k in range(len(ids) - 1):
                rank = ranks.get((ids[k], ids[k + 1]))
                if rank is not None and (best_rank is None or rank < best_rank):
                    best_rank, best_at = rank, k
            if best_rank is None:
                break
            pair = (ids[best_at], ids[best_at + 1])
            merged = self._merge_result[pair]
            # Merge every non-overlapping occurrence of this pair, left to right.
            out, k = [], 0
            while k < len(ids):
                if k < len(ids) - 1 and ids[k] == pair[0] and ids[k + 1] == pair[1]:
                    out.append(merged)
                    k += 2
                else:
                    out.append(ids[k])
                    k += 1
            ids = out
        return tuple(ids)

    def _encode_ordinary(self, text: str, out: list[int]) -> None:
        if self.normalize:
            text = unicodedata.normalize(self.normalize, text)
        cache = self._cache
        for piece in self._regex.findall(text):
            ids = cache.get(piece)
            if ids is None:
                ids = self._bpe(piece)
                if len(cache) < CACHE_LIMIT:
                    cache[piece] = ids
            out.extend(ids)

    def encode(self, text: str, allowed_special: str | Iterable[str] = "all") -> list[int]:
        """Text -> ids. `allowed_special`: 'all', 'none' (special strings encoded as plain text),
        or a set of special tokens to honour."""
        if allowed_special == "all":
            splitter = self._splitter
        elif allowed_special == "none":
            splitter = None
        else:
            allowed = set(allowed_special)
            unknown = allowed - set(self.special_tokens)
            if unknown:
                raise TokenizerError(f"not special tokens of this tokenizer: {sorted(unknown)}")
            splitter = special_splitter(allowed)
        out: list[int] = []
        for k, part in enumerate(split_on_specials(text, splitter)):
            if k % 2:
                out.append(self.special_tokens[part])
            elif part:
                self._encode_ordinary(part, out)
        return out

    def encode_iterable(self, chunks: Iterable[str], allowed_special: str | Iterable[str] = "all") -> Iterator[int]:
        """Encode a stream of text (e.g. an open file's lines) with flat memory.

        Text is buffered only up to the last boundary where pre-tokenization cannot differ
        from encoding the whole stream at once, so the ids equal `encode("".join(chunks))`.
        """
        buffer = ""
        specials = list(self.special_tokens) if allowed_special != "none" else []
        for chunk in chunks:
            buffer += chunk
            if len(buffer) < 8192:
                continue
            cut = last_safe_cut(buffer, specials)
            if cut > 0:
                yield from self.encode(buffer[:cut], allowed_special)
                buffer = buffer[cut:]
        if buffer:
            yield from self.encode(buffer, allowed_special)

    def encode_batch(self, texts: list[str], num_workers: int | None = None, fast: bool = True) -> list[list[int]]:
        """Encode many texts. Uses the `tokenizers` library on the same vocabulary when installed
        (identical ids, tested), otherwise several processes running the pure-Python encoder."""
        if fast and self.fast_backend() is not None:
            return [e.ids for e in self._fast.encode_batch(texts, add_special_tokens=False)]
        return encode_in_processes(self, texts, num_workers)

    def fast_backend(self):
        """The equivalent `tokenizers.Tokenizer` (Rust) on exactly this vocabulary and merges, or None
        when the library is not installed. Tests prove its ids equal the pure-Python encoder's."""
        if self._fast is None:
            try:
                import tokenizers  # optional dependency
            except ImportError:
                return None
            self._fast = tokenizers.Tokenizer.from_str(json.dumps(tokenizer_json(self), ensure_ascii=False))
        return self._fast

    # ----------------------------------------------------------------- decoding

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        return b"".join(self.id_to_bytes(int(i)) for i in ids)

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text. Ids that end inside a UTF-8 character decode to U+FFFD, never an error."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def token_pieces(self, ids: Iterable[int]) -> list[str]:
        """Each id's text, for display (partial UTF-8 shown as escapes)."""
        pieces = []
        for i in ids:
            raw = self.id_to_bytes(int(i))
            try:
                pieces.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                pieces.append("".join(f"\\x{b:02x}" for b in raw))
        return pieces

    def with_special_tokens(self, tokens: Iterable[str]) -> tuple["Tokenizer", list[int]]:
        """(copy, added_ids): a copy of this tokenizer with `tokens` added as special tokens, new ids at the
        end of the vocabulary in the order given (tokens it already has keep their ids). Models using it
        need an embedding table of the copy's `vocab_size`."""
        specials = dict(self.special_tokens)
        added = []
        for text in tokens:
            if not text:
                raise TokenizerError("a special token cannot be the empty string")
            if text not in specials:
                specials[text] = max(self.vocab_size, max(specials.values(), default=-1) + 1)
                added.append(specials[text])
        copy = Tokenizer(self.vocab, self.merges, specials, pattern=self.pattern, normalize=self.normalize,
                         chat_template=self.chat_template, eos_token=self.eos_token, ignore_merges=self.ignore_merges)
        return copy, added

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True, **template_vars) -> str:
        """Render a conversation with this tokenizer's chat template (or a plain transcript)."""
        return render_chat(self, messages, add_generation_prompt, **template_vars)

    # ----------------------------------------------------------------- pickling (for worker processes)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_fast"] = None
        state["_cache"] = {}
        state.pop("_regex")
        state.pop("_splitter")
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._regex = compile_pattern(self.pattern)
        self._splitter = special_splitter(self.special_tokens)

    # ----------------------------------------------------------------- files

    def save(self, directory) -> None:
        """Write tokenizer.json + tokenizer_config.json (Hugging Face format) into `directory`."""
        save_tokenizer(self, directory)

    def __repr__(self) -> str:
        return (
            f"Tokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, "
            f"special_tokens={len(self.special_tokens)}, fingerprint={self.fingerprint()})"
        )
