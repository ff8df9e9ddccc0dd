"""Normalise documents and drop low-quality ones (length, non-letters, Gopher repetition rules).

Each rule counts the documents and characters it removed, so `slm prepare` can say why a corpus
shrank. Rules run in a fixed order and a document is charged to the first rule it fails.
`DocumentCleaner` is the plain per-document definition; `BatchCleaner` (used by `slm prepare`)
gives the same results vectorised over a batch.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from slmkit.data.clean.words import WordBatch, WordTable, split_words
from slmkit.data.config import CleanConfig

# runs of 2+ spaces, or any other horizontal space (tab, no-break space): plain single spaces are left alone
_HORIZONTAL_SPACE = re.compile(r"[^\S\n]{2,}|[^\S\n ]")
_MANY_NEWLINES = re.compile(r"\n{3,}")
_NON_LETTER = re.compile(r"[^\w\s]|[\d_]")
_WORD = re.compile(r"\w+")
# a literal end-of-text marker inside a document would look like a document boundary after tokenizing
_SPECIAL_MARKERS = ("<|endoftext|>",)


def normalize(text: str) -> str:
    """NFC, LF line ends, one space between words, stripped lines, at most one blank line in a row.

    Each step runs only when a cheap test says it can change something (same result as always
    running it; the regexes cost ~70 ns a character)."""
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    for marker in _SPECIAL_MARKERS:
        if marker in text:
            text = text.replace(marker, " ")
    if _may_have_odd_space(text):
        text = _HORIZONTAL_SPACE.sub(" ", text)
    if " \n" in text or "\n " in text:
        text = "\n".join(line.strip() for line in text.split("\n"))
    if "\n\n\n" in text:
        text = _MANY_NEWLINES.sub("\n\n", text)
    return text.strip()


# ASCII whitespace other than space and newline (\r is gone by then): what _HORIZONTAL_SPACE replaces
_ODD_ASCII_SPACE = bytes(c for c in range(128) if chr(c).isspace() and c not in (10, 32))
_NOT_ODD_ASCII_SPACE = bytes(c for c in range(256) if c not in _ODD_ASCII_SPACE)


def _may_have_odd_space(text: str) -> bool:
    if "  " in text or not text.isascii():
        return True
    return bool(text.encode("ascii").translate(None, _NOT_ODD_ASCII_SPACE))


@dataclass
class CleanStats:
    """What cleaning saw and removed: documents and characters, per rule."""

    docs_in: int = 0
    chars_in: int = 0
    docs_out: int = 0
    chars_out: int = 0
    removed_docs: dict[str, int] = field(default_factory=dict)
    removed_chars: dict[str, int] = field(default_factory=dict)

    def add(self, other: "CleanStats") -> None:
        self.docs_in += other.docs_in
        self.chars_in += other.chars_in
        self.docs_out += other.docs_out
        self.chars_out += other.chars_out
        for rule, n in other.removed_docs.items():
            self.removed_docs[rule] = self.removed_docs.get(rule, 0) + n
        for rule, n in other.removed_chars.items():
            self.removed_chars[rule] = self.removed_chars.get(rule, 0) + n

    def count(self, raw_chars: int, clean_chars: int, reason: str | None) -> None:
        """One document of `raw_chars` characters, `clean_chars` after normalising, removed by `reason`."""
        self.docs_in += 1
        self.chars_in += raw_chars
        if reason is None:
            self.docs_out += 1
            self.chars_out += clean_chars
        else:
            self.removed_docs[reason] = self.removed_docs.get(reason, 0) + 1
            self.removed_chars[reason] = self.removed_chars.get(reason, 0) + raw_chars

    def as_dict(self) -> dict:
        return {
            "docs_in": self.docs_in, "chars_in": self.chars_in, "docs_out": self.docs_out,
            "chars_out": self.chars_out, "removed_docs": dict(self.removed_docs),
            "removed_chars": dict(self.removed_chars),
        }


def _dup_line_fractions(text: str) -> tuple[float, float]:
    lines = [line for line in text.split("\n") if line]
    if len(lines) < 2:
        return 0.0, 0.0
    seen: set[str] = set()
    dup_lines = dup_chars = 0
    for line in lines:
        if line in seen:
            dup_lines += 1
            dup_chars += len(line)
        seen.add(line)
    return dup_lines / len(lines), dup_chars / max(1, sum(map(len, lines)))


def _top_ngram_fraction(words: list[str], n: int, word_chars: int) -> float:
    """Share of word characters taken by the most frequent n-gram (all its occurrences)."""
    if len(words) < n:
        return 0.0
    gram, count = Counter(zip(*(words[i:] for i in range(n)))).most_common(1)[0]
    return count * sum(map(len, gram)) / word_chars if count > 1 else 0.0


def _dup_ngram_fraction(words: list[str], n: int, word_chars: int) -> float:
    """Share of word characters inside n-grams that occur more than once (each word counted once)."""
    if len(words) < 2 * n:
        return 0.0
    grams = list(zip(*(words[i:] for i in range(n))))
    counts = Counter(grams)
    if len(counts) == len(grams):
        return 0.0
    covered = bytearray(len(words))
    for start, gram in enumerate(grams):
        if counts[gram] > 1:
            covered[start:start + n] = b"\x01" * n
    return sum(len(w) for w, c in zip(words, covered) if c) / word_chars


class DocumentCleaner:
    """Normalise and filter one document at a time, counting what each rule removes."""

    def __init__(self, config: CleanConfig):
        self.config = config
        self.top_ngrams = sorted((int(n), f) for n, f in config.max_top_ngram_fraction.items() if f)
        self.dup_ngrams = sorted((int(n), f) for n, f in config.max_dup_ngram_fraction.items() if f)
        self.stats = CleanStats()

    def rejection(self, text: str) -> str | None:
        """The first rule that `text` (already normalised) fails, or None when it passes."""
        c = self.config
        if len(text) < c.min_chars:
            return "too_short"
        if c.max_chars and len(text) > c.max_chars:
            return "too_long"
        words = _WORD.findall(text.lower())
        if len(words) < c.min_words:
            return "too_few_words"
        if c.max_non_letter_fraction:
            nonspace = len(text) - text.count(" ") - text.count("\n")
            others = len(_NON_LETTER.findall(text))
            if nonspace and others / nonspace > c.max_non_letter_fraction:
                return "non_letters"
        if c.max_dup_line_fraction or c.max_dup_line_char_fraction:
            line_frac, char_frac = _dup_line_fractions(text)
            if c.max_dup_line_fraction and line_frac > c.max_dup_line_fraction:
                return "dup_lines"
            if c.max_dup_line_char_fraction and char_frac > c.max_dup_line_char_fraction:
                return "dup_lines"
        word_chars = sum(map(len, words))
        for n, limit in self.top_ngrams:
            if _top_ngram_fraction(words, n, word_chars) > limit:
                return "top_ngram"
        for n, limit in self.dup_ngrams:
            fraction = _dup_ngram_fraction(words, n, word_chars)
            if fraction > limit:
                return "dup_ngrams"
            if fraction == 0.0:  # no repeated n-gram means no repeated longer one either
                break
        return None

    def __call__(self, text: str) -> str | None:
        """The cleaned document, or None when a rule removes it."""
        s = self.stats
        s.docs_in += 1
        s.chars_in += len(text)
        clean = normalize(text) if self.config.normalize else text
        reason = self.rejection(clean)
        if reason is not None:
            s.removed_docs[reason] = s.removed_docs.get(reason, 0) + 1
            s.removed_chars[reason] = s.removed_chars.get(reason, 0) + len(text)
            return None
        s.docs_out += 1
        s.chars_out += len(clean)
        return clean


# --- batches: the same rules, vectorised over a batch of documents -------------------------------
#
# `BatchCleaner` gives exactly the results of `DocumentCleaner` (tests compare them) at a fraction of
# the cost: one word split per document (shared with MinHash), word ids instead of strings, and the
# n-gram rules as a few numpy sorts per batch. An n-gram can only repeat where its first n-1 words
# repeat, so each n only sorts the positions whose (n-1)-gram repeats; for ordinary text that is
# one sort over all words and a few much smaller ones.

# ASCII letters and whitespace (what `[^\w\s]|[\d_]` does not count): deleting them leaves the rest
_LETTERS_AND_SPACE = bytes(c for c in range(128) if chr(c).isalpha() or chr(c).isspace())


def count_non_letters(text: str) -> int:
    """len(_NON_LETTER.findall(text)), quickly for ASCII text."""
    if text.isascii():
        return len(text.encode("ascii").translate(None, _LETTERS_AND_SPACE))
    return len(_NON_LETTER.findall(text))


def dup_line_fractions(text: str) -> tuple[float, float]:
    """`_dup_line_fractions` with a shortcut for the usual case of no repeated line."""
    lines = [line for line in text.split("\n") if line]
    if len(lines) < 2 or len(set(lines)) == len(lines):
        return 0.0, 0.0
    return _dup_line_fractions(text)


def _bits(n: int) -> int:
    return max(1, int(n).bit_length())


def _group(keys: np.ndarray, key_bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Groups of equal keys: per element its group (groups numbered in key order), per group its
    size and its first element (smallest index). Sorts keys with the index packed in the low bits
    when that fits in 64 bits (a plain sort is faster than argsort), else a stable argsort."""
    m = len(keys)
    index_bits = _bits(m - 1)
    if key_bits + index_bits <= 64:
        packed = (keys << np.uint64(index_bits)) | np.arange(m, dtype=np.uint64)
        packed.sort()
        order = (packed & np.uint64((1 << index_bits) - 1)).astype(np.int64)
        sorted_keys = packed >> np.uint64(index_bits)
    else:
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
    new = np.empty(m, dtype=bool)
    new[:1] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    rank = np.empty(m, dtype=np.int64)
    rank[order] = np.cumsum(new) - 1
    sizes = np.diff(np.append(starts, m))
    return rank, sizes, order[starts]


def ngram_fractions(words: WordBatch, top_ns: list[int], dup_ns: list[int]) -> tuple[dict, dict]:
    """Per document, `_top_ngram_fraction` for each n in top_ns and `_dup_ngram_fraction` for each n
    in dup_ns (same values, bit for bit): two dicts n -> [docs] float64."""
    counts = words.counts
    docs, total = len(counts), len(words.ids)
    top = {n: np.zeros(docs) for n in top_ns}
    dup = {n: np.zeros(docs) for n in dup_ns}
    max_n = max([*top_ns, *dup_ns], default=0)
    if max_n == 0 or total == 0:
        return top, dup
    offsets = words.offsets
    doc_of = np.repeat(np.arange(docs, dtype=np.int64), counts)
    end_of = offsets[1:][doc_of]  # one past the last word of each word's document
    char_cum = np.zeros(total + 1, dtype=np.int64)
    np.cumsum(words.lens, out=char_cum[1:])
    word_chars = char_cum[offsets[1:]] - char_cum[offsets[:-1]]
    ids = words.ids
    id_bits = _bits(int(ids.max()))
    doc_bits = _bits(docs - 1)
    uids = ids.astype(np.uint64)
    if min(top_ns + dup_ns) >= 2 and doc_bits + 2 * id_bits <= 64:
        # start at bigrams: key = (document, word, next word)
        n = 2
        cand = np.flatnonzero(np.arange(total) + 2 <= end_of)
        keys = ((doc_of[cand].astype(np.uint64) << np.uint64(id_bits)) | uids[cand]) << np.uint64(id_bits)
        keys |= uids[cand + 1]
        key_bits = doc_bits + 2 * id_bits
    else:
        n = 1
        cand = np.arange(total)
        keys = (doc_of.astype(np.uint64) << np.uint64(id_bits)) | uids
        key_bits = doc_bits + id_bits
    while len(cand):
        rank, sizes, first = _group(keys, key_bits)
        if n in top:
            g = np.flatnonzero(sizes > 1)
            pos = cand[first[g]]
            cnt = sizes[g]
            doc = doc_of[pos]
            # per document the most frequent n-gram; on a tie the one seen first (as Counter.most_common)
            order = np.lexsort((pos, -cnt, doc))
            best = order[np.r_[True, doc[order][1:] != doc[order][:-1]]] if len(order) else order
            d = doc[best]
            top[n][d] = cnt[best] * (char_cum[pos[best] + n] - char_cum[pos[best]]) / word_chars[d]
        repeated = sizes[rank] > 1
        if n in dup:
            starts = cand[repeated]
            starts = starts[counts[doc_of[starts]] >= 2 * n]
            if len(starts):  # the words inside repeated n-grams, each once
                inside = np.unique((starts[:, None] + np.arange(n)).ravel())
                covered = np.bincount(doc_of[inside], weights=words.lens[inside], minlength=docs)
                d = np.flatnonzero(covered)
                dup[n][d] = covered[d] / word_chars[d]  # exact: integer sums well below 2**53
        if n == max_n:
            break
        grow = repeated & (cand + n + 1 <= end_of[cand])  # the (n+1)-gram can only repeat here
        group_bits = _bits(len(sizes) - 1)
        cand, keys = cand[grow], (rank[grow].astype(np.uint64) << np.uint64(id_bits)) | uids[cand[grow] + n]
        key_bits = group_bits + id_bits
        n += 1
    return top, dup


@dataclass
class CleanedBatch:
    texts: list[str]  # the documents that passed, normalised
    index: list[int]  # their positions in the input batch
    words: WordBatch  # their words (for MinHash)
    reasons: list[str | None]  # per input document: the rule that removed it, or None
    normalized: list[str]  # per input document: its normalised text


class BatchCleaner:
    """`DocumentCleaner` over a batch at a time: the same documents pass, the same rule is charged."""

    def __init__(self, config: CleanConfig, words: WordTable | None = None):
        self.config = config
        self.words = words if words is not None else WordTable()
        self.top_ngrams = sorted((int(n), f) for n, f in config.max_top_ngram_fraction.items() if f)
        self.dup_ngrams = sorted((int(n), f) for n, f in config.max_dup_ngram_fraction.items() if f)
        self.stats = CleanStats()

    def rejections(self, texts: list[str]) -> tuple[list[str | None], WordBatch]:
        """For each (normalised) text the first rule it fails or None, and the words of every text
        (empty for texts that failed a length bound)."""
        c = self.config
        reasons: list[str | None] = [None] * len(texts)
        split = []
        for i, text in enumerate(texts):
            if len(text) < c.min_chars:
                reasons[i] = "too_short"
            elif c.max_chars and len(text) > c.max_chars:
                reasons[i] = "too_long"
            split.append(() if reasons[i] else split_words(text))
        words = self.words.lookup(split)
        counts = words.counts.tolist()
        for i, text in enumerate(texts):
            if reasons[i]:
                continue
            if counts[i] < c.min_words:
                reasons[i] = "too_few_words"
                continue
            if c.max_non_letter_fraction:
                nonspace = len(text) - text.count(" ") - text.count("\n")
                if nonspace and count_non_letters(text) / nonspace > c.max_non_letter_fraction:
                    reasons[i] = "non_letters"
                    continue
            if c.max_dup_line_fraction or c.max_dup_line_char_fraction:
                line_frac, char_frac = dup_line_fractions(text)
                if (c.max_dup_line_fraction and line_frac > c.max_dup_line_fraction) or (
                    c.max_dup_line_char_fraction and char_frac > c.max_dup_line_char_fraction
                ):
                    reasons[i] = "dup_lines"
        if self.top_ngrams or self.dup_ngrams:
            top, dup = ngram_fractions(words, [n for n, _ in self.top_ngrams], [n for n, _ in self.dup_ngrams])
            pending = np.array([r is None for r in reasons], dtype=bool)
            for n, limit in self.top_ngrams:
                hit = pending & (top[n] > limit)
                for i in np.flatnonzero(hit):
                    reasons[i] = "top_ngram"
                pending &= ~hit
            alive = pending.copy()  # as the per-document loop: stop at the first n with no repeat
            for n, limit in self.dup_ngrams:
                hit = alive & (dup[n] > limit)
                for i in np.flatnonzero(hit):
                    reasons[i] = "dup_ngrams"
                alive &= ~hit & (dup[n] != 0.0)
        return reasons, words

    def __call__(self, raw: list[str]) -> CleanedBatch:
        """Normalise and filter a batch, counting what each rule removes (in `self.stats`)."""
        texts = [normalize(t) for t in raw] if self.config.normalize else list(raw)
        reasons, words = self.rejections(texts)
        for r, text, reason in zip(raw, texts, reasons):
            self.stats.count(len(r), len(text), reason)
        index = [i for i, reason in enumerate(reasons) if reason is None]
        mask = np.array([r is None for r in reasons], dtype=bool)
        return CleanedBatch([texts[i] for i in index], index, words.select(mask), reasons, texts)
