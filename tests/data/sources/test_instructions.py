"""The synthetic instruction data: deterministic, every answer passes its own check and a planted wrong one fails,
the held-out split shares no cast and no prompt with train; and the checker's matching rule."""

import json
import random
import re
from collections import Counter

import pytest

from slmkit.data.sources import synthetic_words as W
from slmkit.data.sources.instruction_checks import check_answer, mentions, prompt_and_reference, score_answers
from slmkit.data.sources.instructions import KINDS, generate_instruction_examples, is_heldout_cast
from slmkit.data.sources.synthetic import OBJECT_PLOTS, StoryCast, story_about
from slmkit.errors import DataError

N = 600


@pytest.fixture(scope="module")
def train():
    return list(generate_instruction_examples(N, seed=0))


@pytest.fixture(scope="module")
def heldout():
    return list(generate_instruction_examples(200, seed=0, split="heldout"))


def final(example):
    return example["messages"][-1]["content"]


def user_turns(example):
    return [m["content"] for m in example["messages"] if m["role"] == "user"]


def test_same_seed_same_examples_other_seed_other(train):
    assert list(generate_instruction_examples(N, seed=0)) == train
    other = list(generate_instruction_examples(N, seed=1))
    assert {json.dumps(e) for e in other}.isdisjoint(json.dumps(e) for e in train)
    assert json.loads(json.dumps(train)) == train  # JSON-able as it is


def test_chat_format_and_equal_shares(train):
    counts = Counter(e["check"]["kind"] for e in train)
    assert set(counts) == set(KINDS) and max(counts.values()) - min(counts.values()) <= 1
    for e in train:
        roles = [m["role"] for m in e["messages"]]
        if roles[0] == "system":
            roles = roles[1:]
        turns = 2 if e["check"]["kind"] == "multi_turn" else 1
        assert roles == ["user", "assistant"] * turns
        assert all(isinstance(m["content"], str) and m["content"].strip() for m in e["messages"])
    assert 0.3 < sum(e["messages"][0]["role"] == "system" for e in train) / N < 0.7
    only = list(generate_instruction_examples(30, seed=0, kinds=["story_question"]))
    assert {e["check"]["kind"] for e in only} == {"story_question"}


def test_story_requests_name_their_cast_and_a_planted_wrong_story_fails(train):
    requests = [e for e in train if e["check"]["kind"] == "story_request"]
    assert len({e["messages"][-2]["content"].split()[0] for e in requests}) >= 4  # several phrasings
    for e in requests:
        check, story, prompt = e["check"], final(e), e["messages"][-2]["content"]
        assert check_answer(check, story), e
        assert 60 <= len(story.split()) <= 150
        for item in ("name", "character", "object"):
            assert check[item] in prompt  # the request names what the story must
        # planted faults: the same story with the name, the kind or the object swapped for another
        other_name = "Zed" if check["name"] != "Zed" else "Quin"
        assert not check_answer(check, re.sub(rf"\b{check['name']}\b", other_name, story))
        assert not check_answer(check, re.sub(rf"\b{check['character']}\b", "giraffe", story))
        assert not check_answer(check, re.sub(rf"\b{check['object']}(s|es)?\b", "spoon", story))


def test_question_answers_contain_their_answer_and_wrong_names_fail(train):
    questions = [e for e in train if e["check"]["kind"] != "story_request"]
    rejected = 0
    for e in questions:
        check, reply = e["check"], final(e)
        assert check_answer(check, reply), e
        assert len(reply.split()) <= 25
        answers = [check["answer"]] if isinstance(check["answer"], str) else check["answer"]
        assert all(mentions(reply, a) for a in answers)
        if e["check"]["kind"] == "story_question":
            assert all(mentions(e["messages"][-2]["content"], a) for a in answers)  # the answer is in the story
        assert not check_answer(check, "I do not know.")
        for wrong in check["reject"]:  # naming the other character instead, or as well, is wrong
            rejected += 1
            assert not check_answer(check, f"{wrong}.") and not check_answer(check, f"{reply} {wrong}.")
    assert rejected > len(questions) / 4


def test_where_it_was_found_is_read_from_the_told_story():
    """Three places are searched; only the last is the answer, the first two are rejected."""
    examples = list(generate_instruction_examples(300, seed=5, kinds=["story_question"]))
    wheres = [e for e in examples if "Where did they find" in e["messages"][-2]["content"]]
    assert len({e["check"]["answer"] for e in wheres}) >= 3
    for e in wheres:
        story = e["messages"][-2]["content"]
        found = re.search(r"Together they looked (.+?), and there it was!", story).group(1)
        searched = re.search(r"looked (.+?)\. \w+ looked (.+?)\. But the", story).groups()
        assert mentions(found, e["check"]["answer"])
        assert len(e["check"]["reject"]) == 2
        assert all(mentions(place, r) for place, r in zip(searched, e["check"]["reject"]))


def test_heldout_shares_no_cast_and_no_prompt_with_train(train, heldout):
    assert {tuple(e["check"]["cast"]) for e in train}.isdisjoint(tuple(e["check"]["cast"]) for e in heldout)
    assert all(is_heldout_cast(*e["check"]["cast"]) for e in heldout)
    assert not any(is_heldout_cast(*e["check"]["cast"]) for e in train)
    train_prompts = {json.dumps(prompt_and_reference(e)[0]) for e in train}
    train_first_turns = {user_turns(e)[0] for e in train}
    for e in heldout:
        assert json.dumps(prompt_and_reference(e)[0]) not in train_prompts
        assert user_turns(e)[0] not in train_first_turns
        assert check_answer(e["check"], final(e))
    pairs = [(n, t) for n, _, _ in W.CHARACTERS for t, _ in W.OBJECTS]
    share = sum(is_heldout_cast(*p) for p in pairs) / len(pairs)
    assert 0.05 < share < 0.25  # a held-out share, every name and object still seen in train
    assert {e["check"]["cast"][0] for e in heldout} <= {n for n, _, _ in W.CHARACTERS}


def test_every_plot_and_kind_of_hero_can_be_requested():
    rng = random.Random(0)
    for kind, pronouns in W.REQUEST_KINDS:
        for plot in OBJECT_PLOTS * 5:
            cast = StoryCast("Nell", kind, pronouns[0], "kite")
            story = story_about(rng, cast, plot)
            assert story.plot == plot and all(mentions(story.text, w) for w in ("Nell", kind, "kite"))
            assert not mentions(story.text.replace(kind, "one", 1), kind), story.text  # named once, as the hero
    with pytest.raises(DataError, match="unknown plot"):
        story_about(rng, StoryCast("Nell", "cat", "she", "kite"), "baking")
    with pytest.raises(DataError, match="object"):
        story_about(rng, StoryCast("Nell", "cat", "she", "spaceship"), None)


def test_the_matching_rule():
    assert mentions("Max's key.", "max") and mentions("KEYS!", "key") and mentions("two boxes", "box")
    assert mentions("the puppies", "puppy") and mentions("Her teddy bears", "teddy bear")
    assert not mentions("Maxwell", "max") and not mentions("a keyboard", "key") and not mentions("a teddy", "teddy bear")
    assert not mentions("a bear in the teddy shop", "teddy bear") and not mentions("three mice", "mouse")
    check = {"kind": "story_request", "name": "Max", "character": "cat", "object": "key"}
    assert check_answer(check, "Once upon a time, a cat named Max found two keys.")
    assert not check_answer(check, "Once upon a time, a dog named Max found a key.")
    with pytest.raises(DataError, match="unknown check kind"):
        check_answer({"kind": "essay"}, "text")


def test_score_answers_per_kind(train):
    sample = train[:30]
    answers = [final(e) if i % 3 else "no idea" for i, e in enumerate(sample)]
    scores = score_answers(sample, answers)
    expected = sum(1 for i, e in enumerate(sample) if i % 3 and check_answer(e["check"], final(e)))
    assert scores["all"]["n"] == 30 and scores["all"]["correct"] == expected == 20
    for kind in KINDS:
        rows = [i for i, e in enumerate(sample) if e["check"]["kind"] == kind]
        assert scores[kind]["n"] == len(rows)
        assert scores[kind]["accuracy"] == pytest.approx(sum(1 for i in rows if i % 3) / len(rows))
    with pytest.raises(DataError, match="one answer per example"):
        score_answers(sample, answers[:-1])


def test_bad_arguments_are_clear_errors():
    for kwargs, message in [({"kinds": ["poem"]}, "unknown example kinds"), ({"split": "val"}, "unknown split"),
                            ({"max_words": 40}, "too small")]:
        with pytest.raises(DataError, match=message):
            next(generate_instruction_examples(3, **kwargs))
    short = list(generate_instruction_examples(60, seed=0, max_words=120))
    assert all(sum(len(m["content"].split()) for m in e["messages"]) <= 120 for e in short)
