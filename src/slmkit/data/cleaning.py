"""Normalise documents and drop low-quality ones (length, non-letters, Gopher repetition rules).

Each rule counts the documents and characters it removed, so `slm prepare` can say why a corpus
shrank. Rules run in a fixed order and a document is charged to the first rule it fails.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field

from slmkit.data.config import CleanConfig

# runs of 2+ spaces, or any other horizontal space (tab, no-break space): plain single spaces are left alone
_HORIZONTAL_SPACE = re.compile(r"[^\S\n]{2,}|[^\S\n ]")
_MANY_NEWLINES = re.compile(r"\n{3,}")
_NON_LETTER = re.compile(r"[^\w\s]|[\d_]")
_WORD = re.compile(r"\w+")
# a literal end-of-text marker inside a document would look like a document boundary after tokenizing
_SPECIAL_MARKERS = ("<|endoftext|>",)


def normalize(text: str) -> str:
    """NFC, LF line ends, one space between words, stripped lines, at most one blank line in a row."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    for marker in _SPECIAL_MARKERS:
        text = text.replace(marker, " ")
    text = _HORIZONTAL_SPACE.sub(" ", text)
    if " \n" in text or "\n " in text:
        text = "\n".join(line.strip() for line in text.split("\n"))
    return _MANY_NEWLINES.sub("\n\n", text).strip()


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
