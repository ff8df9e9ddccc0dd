from slmkit.data.clean.cleaning import DocumentCleaner, normalize
from slmkit.data.config import CleanConfig

PHRASE = "the little red hen found some seeds near the old barn"
FILLER = " ".join(f"w{chr(97 + i % 26)}{chr(97 + i // 26)}x" for i in range(40))
GOOD = "Tom had a red ball. He liked to play with it in the park every day after school with his dog."


def test_normalize_nfc_whitespace_and_markers():
    decomposed = "Cafe\u0301  au\tlait \u00a0 ok \r\n\r\n\r\n\n next  <|endoftext|> line "
    assert normalize(decomposed) == "Caf\u00e9 au lait ok\n\nnext line"


def test_each_rule_removes_its_planted_document_and_counts_it():
    planted = {
        "too_short": "Hi there.",
        "too_long": "word " * 30_000,
        "non_letters": "$$ 12 %% 34 ## 56 @@ 78 !! 90 ** 11 ++ 22 == 33 a b c d e",
        "dup_lines": "\n".join(["Buy now and save big today."] * 6 + ["A different line is here."]),
        "top_ngram": " ".join(["the cat"] * 40 + ["and then the dog ran off to the big park"]),
        # a ten-word sentence said twice among forty different words: no single n-gram dominates
        "dup_ngrams": " ".join([PHRASE, FILLER, PHRASE]),
    }
    cleaner = DocumentCleaner(CleanConfig())
    for rule, text in planted.items():
        assert cleaner.rejection(normalize(text)) == rule, rule
        assert cleaner(text) is None
    assert cleaner(GOOD) == GOOD
    s = cleaner.stats
    assert s.docs_in == len(planted) + 1 and s.docs_out == 1
    assert s.removed_docs == {rule: 1 for rule in planted}
    assert s.removed_chars["too_short"] == len(planted["too_short"])
    assert s.chars_out == len(GOOD)


def test_rules_can_be_switched_off():
    text = " ".join(["one two three four five six seven"] * 3 + ["eight nine ten eleven twelve"] * 3)
    off = CleanConfig(max_dup_ngram_fraction={}, max_top_ngram_fraction={})
    assert DocumentCleaner(off)(text) == text


def test_real_stories_mostly_pass(tinystories_valid):
    from slmkit.data.sources import read_txt

    docs = list(read_txt(tinystories_valid, "blank_line"))[:500]
    cleaner = DocumentCleaner(CleanConfig(max_dup_ngram_fraction={"5": 0.3}))
    kept = [d for d in docs if cleaner(d) is not None]
    assert 0.85 * len(docs) <= len(kept) < len(docs) + 1
