"""The vectorised cleaning (BatchCleaner, ngram_fractions, the word split) against plain per-document
references: the same documents pass, the same rule is charged, the fractions are equal bit for bit."""

import random
import re
import unicodedata

import numpy as np
import pytest

from slmkit.data.clean.cleaning import (
    BatchCleaner,
    DocumentCleaner,
    _dup_ngram_fraction,
    _top_ngram_fraction,
    count_non_letters,
    ngram_fractions,
    normalize,
)
from slmkit.data.clean.words import WordBatch, WordTable, split_words
from slmkit.data.config import CleanConfig
from slmkit.data.sources import read_txt
from slmkit.data.sources.synthetic import generate_stories

from .test_cleaning import FILLER, GOOD, PHRASE

_HSPACE = re.compile(r"[^\S\n]{2,}|[^\S\n ]")
_NON_LETTER = re.compile(r"[^\w\s]|[\d_]")


def normalize_reference(text: str) -> str:
    """The original, always-run-every-step normalisation."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = text.replace("<|endoftext|>", " ")
    text = _HSPACE.sub(" ", text)
    if " \n" in text or "\n " in text:
        text = "\n".join(line.strip() for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


ODD = [
    "Cafe\u0301  au\tlait \u00a0 ok \r\n\r\n\r\n\n next  <|endoftext|> line ",
    "a\x0bb\x0cc\x1cd\x1fe \t f", "  lead and trail  ", "one\n \ntwo\n\n\n\nthree", "\u2003wide\u3000space\u00a0",
    "K\u212a kelvin \u0130stanbul ma\u00f1ana stra\u00dfe \u2019quoted\u201d \u2014 dash", "snake_case x_1 42 4.2",
    "", "\n\n", "plain ascii text with no change at all.", "caf\u00e9 na\u00efve \u00c9COLE",
]


def random_text(rng: random.Random) -> str:
    alphabet = list("abc xyz  \t\n\n\r.,;'_-0123") + ["\u00e9", "\u2019", "\u00a0", "\u212a", "\u0130", "<|endoftext|>"]
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 80)))


def test_normalize_and_word_split_match_the_references():
    rng = random.Random(0)
    texts = ODD + [random_text(rng) for _ in range(3000)]
    for text in texts:
        assert normalize(text) == normalize_reference(text), repr(text)
        words = split_words(text)
        decoded = [w.decode() if isinstance(w, bytes) else w for w in words]
        assert decoded == re.findall(r"\w+", text.lower()), repr(text)
        assert count_non_letters(text) == len(_NON_LETTER.findall(text)), repr(text)


def repetitive_docs(rng: random.Random, count: int) -> list[str]:
    """Documents from a tiny vocabulary (many repeated n-grams, ties between n-grams of different
    lengths), of 0 to 60 words, some with repeated lines."""
    vocab = ["a", "bb", "ccc", "dddd", "the", "cat", "sat", "mat", "on", "x"]
    docs = []
    for _ in range(count):
        words = [rng.choice(vocab[: rng.randrange(2, len(vocab) + 1)]) for _ in range(rng.randrange(0, 60))]
        text = " ".join(words)
        if rng.random() < 0.2:
            text = "\n".join([text[:30]] * rng.randrange(1, 4) + [text])
        docs.append(text)
    return docs


def test_ngram_fractions_equal_the_per_document_functions():
    rng = random.Random(1)
    docs = repetitive_docs(rng, 400) + [" ".join([PHRASE, FILLER, PHRASE]), GOOD]
    table = WordTable()
    words = table.words(docs)
    top_ns, dup_ns = [1, 2, 3, 4], [2, 5, 6, 8, 10]
    top, dup = ngram_fractions(words, top_ns, dup_ns)
    for i, doc in enumerate(docs):
        ws = re.findall(r"\w+", doc.lower())
        chars = sum(map(len, ws))
        for n in top_ns:
            assert top[n][i] == _top_ngram_fraction(ws, n, chars), (doc, n)
        for n in dup_ns:
            assert dup[n][i] == _dup_ngram_fraction(ws, n, chars), (doc, n)


def test_ngram_fractions_with_ids_too_wide_to_pack():
    """Word ids of 40 bits: the keys no longer fit beside the document and index bits (argsort path)."""
    rng = random.Random(2)
    docs = repetitive_docs(rng, 100)
    table = WordTable()
    small = table.words(docs)
    wide = WordBatch(small.ids * (1 << 36) + 12345, small.lens, small.hashes, small.counts)
    a, b = ngram_fractions(wide, [2, 3], [5, 7]), ngram_fractions(small, [2, 3], [5, 7])
    for n in (2, 3):
        assert np.array_equal(a[0][n], b[0][n])
    for n in (5, 7):
        assert np.array_equal(a[1][n], b[1][n])


CONFIGS = [
    CleanConfig(),
    CleanConfig(max_dup_ngram_fraction={"5": 0.30, "6": 0.28, "7": 0.26, "8": 0.24, "9": 0.22, "10": 0.20}),
    CleanConfig(max_top_ngram_fraction={"1": 0.3, "2": 0.1, "3": 0.08}, max_dup_ngram_fraction={"3": 0.2, "5": 0.1},
                min_words=3, min_chars=5),
    CleanConfig(max_top_ngram_fraction={}, max_dup_ngram_fraction={}, normalize=False),
]


@pytest.mark.parametrize("config", CONFIGS, ids=["default", "recipe", "tight", "off"])
def test_batch_cleaner_equals_document_cleaner(config, tinystories_valid):
    rng = random.Random(3)
    planted = [
        "Hi there.", "word " * 30_000, "$$ 12 %% 34 ## 56 @@ 78 !! 90 ** 11 ++ 22 == 33 a b c d e",
        "\n".join(["Buy now and save big today."] * 6 + ["A different line is here."]),
        " ".join(["the cat"] * 40 + ["and then the dog ran off to the big park"]),
        " ".join([PHRASE, FILLER, PHRASE]), GOOD,
    ]
    real = list(read_txt(tinystories_valid, "blank_line"))[:600]
    docs = planted + real + list(generate_stories(300, seed=5)) + repetitive_docs(rng, 500) + [
        random_text(rng) * 3 for _ in range(300)] + ODD
    rng.shuffle(docs)
    reference = DocumentCleaner(config)
    expected = [reference(d) for d in docs]
    batch = BatchCleaner(config)
    got: list = [None] * len(docs)
    for lo in range(0, len(docs), 97):  # odd batch size: batches mix every kind of document
        cleaned = batch(docs[lo:lo + 97])
        for i, text in zip(cleaned.index, cleaned.texts):
            got[lo + i] = text
        assert cleaned.words.counts.tolist() == [len(split_words(t)) for t in cleaned.texts]
    assert got == expected
    assert batch.stats.as_dict() == reference.stats.as_dict()
    assert sum(batch.stats.removed_docs.values()) > 0


def test_word_table_is_bounded_and_hashes_are_stable():
    table = WordTable(limit=50)
    first = table.words(["alpha beta gamma"])
    for k in range(10):
        table.words([" ".join(f"w{k}x{i}" for i in range(20))])
    assert len(table) <= 50 + 20
    again = table.words(["Alpha BETA gamma"])
    assert np.array_equal(first.hashes, again.hashes)  # stable across resets (and processes: blake2b)
    assert np.array_equal(table.words(["caf\u00e9 \u2019cat\u2019"]).hashes[1:], table.words(["cat"]).hashes)
