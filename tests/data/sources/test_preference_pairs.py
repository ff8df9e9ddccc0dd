"""The synthetic preference pairs: deterministic, every flaw planted and caught by its rule (chosen passes,
rejected fails), held-out casts kept apart, and the word replacement that plants the flaws."""

import json
from collections import Counter

import pytest

from slmkit.data.sources.instruction_checks import check_answer
from slmkit.data.sources.instructions import is_heldout_cast
from slmkit.data.sources.preference_pairs import (
    FLAWS, _replace_words, generate_preference_pairs, is_preferred_by_rule, write_preference_files,
)
from slmkit.errors import DataError


@pytest.fixture(scope="module")
def pairs():
    return list(generate_preference_pairs(250, seed=0))


def test_deterministic_and_every_flaw_in_equal_shares(pairs):
    assert list(generate_preference_pairs(250, seed=0)) == pairs
    assert list(generate_preference_pairs(50, seed=1)) != pairs[:50]
    assert Counter(p["flaw"] for p in pairs) == {f: 50 for f in FLAWS}


def test_chosen_follows_the_request_and_rejected_breaks_it(pairs):
    for p in pairs:
        chosen, rejected = p["chosen"][0]["content"], p["rejected"][0]["content"]
        assert p["chosen"][0]["role"] == p["rejected"][0]["role"] == "assistant"
        assert p["prompt"][-1]["role"] == "user" and chosen != rejected
        assert is_preferred_by_rule(p, chosen) and not is_preferred_by_rule(p, rejected), p["flaw"]
        assert check_answer(p["check"], chosen)
        if p["flaw"] == "unfinished":
            assert chosen.startswith(rejected) and rejected[-1] not in ".!?"
        else:
            assert not check_answer(p["check"], rejected)


def test_the_planted_flaw_is_the_named_one(pairs):
    first = {}
    for p in pairs:
        first.setdefault(p["flaw"], p)
    name = first["wrong_name"]
    assert name["check"]["name"] in name["chosen"][0]["content"]
    assert name["check"]["name"] not in name["rejected"][0]["content"].split()
    thing = first["missing_object"]["check"]["object"]
    assert thing not in first["missing_object"]["rejected"][0]["content"]


def test_heldout_pairs_use_heldout_casts_only():
    for p in generate_preference_pairs(60, seed=0, split="heldout"):
        name, thing = p["check"]["cast"]
        assert is_heldout_cast(name, thing)
    for p in generate_preference_pairs(60, seed=0):
        assert not is_heldout_cast(*p["check"]["cast"])


@pytest.mark.parametrize("text, old, new, expected", [
    ("Max saw Max's key.", "Max", "Tom", "Tom saw Tom's key."),
    ("Cat and the cat, the cats.", "cat", "frog", "Frog and the frog, the frogs."),
    ("The keys and a keyboard.", "key", "ball", "The balls and a keyboard."),
    ("A teddy bear and teddy bears.", "teddy bear", "kite", "A kite and kites."),
])
def test_replace_words_keeps_whole_words_plurals_and_capitals(text, old, new, expected):
    assert _replace_words(text, old, new) == expected


def test_files_are_written_atomically_with_counts(tmp_path):
    report = write_preference_files(tmp_path / "prefs.jsonl", pairs=15, heldout=5, seed=2)
    train = [json.loads(line) for line in (tmp_path / "prefs.jsonl").read_text().splitlines()]
    held = [json.loads(line) for line in (tmp_path / "prefs.heldout.jsonl").read_text().splitlines()]
    assert len(train) == 15 and len(held) == 5 and sum(report["train"]["counts"].values()) == 15
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prefs.heldout.jsonl", "prefs.jsonl"]
    with pytest.raises(DataError, match="at least 1"):
        write_preference_files(tmp_path / "x.jsonl", pairs=0)
