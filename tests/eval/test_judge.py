"""LLM-as-judge: parsing well-formed, markdown-decorated and malformed replies; the two-turn TinyStories rubric;
MT-Bench single and pairwise grading with the position swap, against scripted judges; and one run with our
own `slm serve` (a tiny random model) as the judge, whose garbage replies are counted, not fatal."""

from __future__ import annotations

import re

import pytest

from slmkit.errors import DataError
from slmkit.eval.endpoint import EndpointClient
from slmkit.eval.judge import (
    STORY_BEGINNINGS, StoryGrades, judge_pairwise, judge_single, judge_stories, parse_rating, parse_story_grades,
    parse_verdict, story_for_judge,
)
from slmkit.eval.judge_prompts import PAIR_SYSTEM_PROMPT, SINGLE_SYSTEM_PROMPT, STORY_GRADING_PROMPT
from tests.serve.conftest import ServerProcess
from tests.serve.tiny_run import make_tiny_run

GOOD_GRADES = "Grammar: 8/10, Creativity: 6/10, Consistency: 9/10, Plot: 7/10, Age group: C (6-7)"


class ScriptedJudge:
    """A judge without a network: `reply(conversation) -> str`; every chat call's arguments are kept."""

    def __init__(self, reply):
        self.reply, self.calls = reply, []

    def chat(self, conversations, max_new_tokens=128, temperature=0.0, seed=0):
        self.calls.append({"conversations": conversations, "max_new_tokens": max_new_tokens,
                           "temperature": temperature, "seed": seed})
        return [self.reply(c) for c in conversations]


# ------------------------------------------------------------------------------------ parsing

@pytest.mark.parametrize("reply, expected", [
    (GOOD_GRADES, StoryGrades(8, 6, 9, 7, "C")),
    ("grammar - 8\ncreativity - 5\nconsistency - 7\nplot - 6\nAge: B", StoryGrades(8, 5, 7, 6, "B")),
    ("**Grammar**: 8\n**Creativity**: 7\n**Consistency with the story's beginning**: 9\n"
     "**Plot (whether it makes sense)**: 6\n**Age group**: D", StoryGrades(8, 7, 9, 6, "D")),
    ("- **Grammar:** 8/10\n- **Creativity:** **7**/10\n- **Consistency:** 9 out of 10\n- **Plot:** 6.5/10\n"
     "- **Age group:** 6-7", StoryGrades(8, 7, 9, 6.5, "C")),
    ('{"grammar": 8, "creativity": 7, "consistency": 9, "plot_sense": 6, "estimated_age_group": "E"}',
     StoryGrades(8, 7, 9, 6, "E")),
    ("| Grammar | 8/10 |\n| Creativity | 7/10 |\n| Consistency | 9/10 |\n| Plot | 6/10 |", StoryGrades(8, 7, 9, 6, None)),
    ("The grammar is mostly fine. Grammar: 8/10. Creativity: 7/10. Consistency: 6/10. Plot: 5/10. "
     "I would guess the age group is E.", StoryGrades(8, 7, 6, 5, "E")),
    ("Grammar: 10/10, Creativity: 0/10, Consistency: 10/10, Plot: 0/10", StoryGrades(10, 0, 10, 0, None)),
])
def test_story_grades_are_read_from_many_layouts(reply, expected):
    assert parse_story_grades(reply) == expected


@pytest.mark.parametrize("reply", [
    "I think it's good",
    "Grammar: ten/10, Creativity: 7/10, Consistency: 6/10, Plot: 5/10",  # a word, not a number
    "Grammar: 12/10, Creativity: 7/10, Consistency: 6/10, Plot: 5/10",  # out of range
    "Grammar: 80/100, Creativity: 7/10, Consistency: 6/10, Plot: 5/10",  # another scale
    "Grammar: 8/10, Creativity: 7/10, Consistency: 6/10",  # no plot grade
    "",
])
def test_malformed_story_grades_are_unparsed(reply):
    assert parse_story_grades(reply) is None


@pytest.mark.parametrize("reply, expected", [
    ("The answer is helpful. Rating: [[8]]", 8.0), ("**Rating: [[7.5]]**", 7.5), ("Rating: [6]", 6.0),
    ('Format "[[rating]]": [[3]]', 3.0), ("[[11]]", None), ("[[0]]", None), ("It is good, 8/10.", None),
])
def test_single_ratings(reply, expected):
    assert parse_rating(reply) == expected


@pytest.mark.parametrize("reply, expected", [
    ("Assistant A is clearer. [[A]]", "A"), ("**[[B]]**", "B"), ("Both are fine. [[C]]", "tie"),
    ("The format asks for [[A]] or [[B]]; my final verdict: [[B]]", "B"), ("Final verdict: [A]", "A"),
    ("A is better", None), ("", None),
])
def test_pair_verdicts(reply, expected):
    assert parse_verdict(reply) == expected


# ------------------------------------------------------------------------------------ the story rubric

def test_the_rubric_is_two_turns_the_second_after_the_judges_own_reply():
    judge = ScriptedJudge(lambda c: GOOD_GRADES if len(c) == 3 else f"assessment of {len(c[0]['content'])} chars")
    beginnings, completions = STORY_BEGINNINGS[:2], [" very shiny.", " the kite flew away."]
    result = judge_stories(judge, beginnings, completions, max_new_tokens=64, seed=3)
    first, second = judge.calls
    assert all(call["max_new_tokens"] == 64 and call["seed"] == 3 for call in judge.calls)
    for k, (conv1, conv2) in enumerate(zip(first["conversations"], second["conversations"])):
        story = story_for_judge(beginnings[k], completions[k])
        assert story == beginnings[k] + "***" + completions[k]
        assert [m["role"] for m in conv1] == ["user"] and story in conv1[0]["content"]
        assert "general assessment" in conv1[0]["content"]
        assert [m["role"] for m in conv2] == ["user", "assistant", "user"] and conv2[0] == conv1[0]
        assert conv2[1]["content"] == judge.reply(conv1)  # the judge's own first reply
        assert conv2[2]["content"] == STORY_GRADING_PROMPT
    assert result.metrics == pytest.approx({"n": 2, "parsed": 2, "unparsed": 0, "parse_rate": 1.0, "grammar": 8,
                                            "creativity": 6, "consistency": 9, "plot": 7, "overall": 7.5,
                                            "grammar_stderr": 0, "creativity_stderr": 0, "consistency_stderr": 0,
                                            "plot_stderr": 0, "overall_stderr": 0, "age_A": 0, "age_B": 0,
                                            "age_C": 1, "age_D": 0, "age_E": 0, "age_F": 0})
    assert result.items[0]["assessment"].startswith("assessment of") and result.items[0]["age_group"] == "C"


def test_half_garbage_replies_give_parse_rate_one_half_and_no_exception():
    def reply(conversation):
        if len(conversation) == 1:
            return "An assessment."
        story_number = STORY_BEGINNINGS.index(conversation[0]["content"].split("\n\n")[1].split("***")[0])
        return GOOD_GRADES if story_number % 2 == 0 else "I think it's good"

    result = judge_stories(ScriptedJudge(reply), STORY_BEGINNINGS[:6], ["x"] * 6)
    assert (result.unparsed, result.parse_rate, result.metrics["parsed"]) == (3, 0.5, 3)
    assert result.metrics["grammar"] == 8.0  # the mean over the parsed items only
    assert [i["reply"] for i in result.unparsed_items()] == ["I think it's good"] * 3
    assert all("grammar" not in i for i in result.unparsed_items())


def test_nothing_parsed_leaves_only_the_counts():
    result = judge_stories(ScriptedJudge(lambda c: "???"), STORY_BEGINNINGS[:2], ["a", "b"])
    assert result.metrics == {"n": 2, "parsed": 0, "unparsed": 2, "parse_rate": 0.0}


def test_bundled_beginnings_stop_mid_sentence():
    assert len(STORY_BEGINNINGS) >= 40 and len(set(STORY_BEGINNINGS)) == len(STORY_BEGINNINGS)
    assert not any(b.rstrip()[-1] in ".!?\"" for b in STORY_BEGINNINGS)


def test_lists_must_line_up():
    with pytest.raises(DataError, match="equal length"):
        judge_stories(ScriptedJudge(lambda c: ""), STORY_BEGINNINGS[:2], ["only one"])


# ------------------------------------------------------------------------------------ MT-Bench

def test_single_grading_uses_single_v1_and_counts_garbage():
    judge = ScriptedJudge(lambda c: "Rating: [[9]]" if "good" in c[1]["content"] else "no idea")
    result = judge_single(judge, ["Q1", "Q2", "Q3", "Q4"], ["good", "bad", "good", "good"])
    (conversations,) = [call["conversations"] for call in judge.calls]
    assert conversations[0][0] == {"role": "system", "content": SINGLE_SYSTEM_PROMPT}
    assert "[Question]\nQ1\n\n[The Start of Assistant's Answer]\ngood\n" in conversations[0][1]["content"]
    assert result.metrics["rating"] == 9.0 and result.unparsed == 1 and result.parse_rate == 0.75
    assert result.items[1]["reply"] == "no idea" and result.items[1]["rating"] is None


def answers_in(conversation) -> tuple[str, str]:
    text = conversation[1]["content"]
    first = re.search(r"\[The Start of Assistant A's Answer\]\n(.*?)\n\[The End", text, re.S).group(1)
    second = re.search(r"\[The Start of Assistant B's Answer\]\n(.*?)\n\[The End", text, re.S).group(1)
    return first, second


def test_a_position_biased_judge_ends_in_ties_with_no_consistency():
    judge = ScriptedJudge(lambda c: "Assistant A is better. [[A]]")
    result = judge_pairwise(judge, ["Q1", "Q2", "Q3"], ["a1", "a2", "a3"], ["b1", "b2", "b3"])
    (conversations,) = [call["conversations"] for call in judge.calls]  # both orders in one call
    assert [answers_in(c) for c in conversations] == [("a1", "b1"), ("a2", "b2"), ("a3", "b3"),
                                                     ("b1", "a1"), ("b2", "a2"), ("b3", "a3")]
    assert conversations[0][0]["content"] == PAIR_SYSTEM_PROMPT
    assert result.metrics == {"n": 3, "parsed": 3, "unparsed": 0, "parse_rate": 1.0, "win_rate": 0.0,
                              "loss_rate": 0.0, "tie_rate": 1.0, "position_consistency": 0.0}
    assert result.items[0]["verdict_in_order"] == "a" and result.items[0]["verdict_swapped"] == "b"


def test_a_judge_that_prefers_the_better_answer_counts_wins_and_losses():
    def prefers_good(conversation):
        first, second = answers_in(conversation)
        return "[[C]]" if ("good" in first) == ("good" in second) else ("[[A]]" if "good" in first else "[[B]]")

    result = judge_pairwise(ScriptedJudge(prefers_good), ["Q1", "Q2", "Q3", "Q4"],
                            ["good 1", "good 2", "bad 3", "good 4"], ["bad 1", "bad 2", "good 3", "good 4"])
    assert [i["outcome"] for i in result.items] == ["win", "win", "loss", "tie"]
    assert result.metrics["win_rate"] == 0.5 and result.metrics["loss_rate"] == 0.25
    assert result.metrics["tie_rate"] == 0.25 and result.metrics["position_consistency"] == 1.0


def test_a_pair_with_one_unreadable_order_is_unparsed():
    judge = ScriptedJudge(lambda c: "[[A]]" if answers_in(c)[0] == "a1" else "hmm")
    result = judge_pairwise(judge, ["Q1"], ["a1"], ["b1"])
    assert result.unparsed == 1 and result.parse_rate == 0.0 and "win_rate" not in result.metrics
    assert result.items[0]["reply_swapped"] == "hmm"


# ------------------------------------------------------------------------------------ a served judge

@pytest.fixture(scope="module")
def judge_server(tmp_path_factory):
    # The judge prompts are ~1000 tokens to this tiny tokenizer: a 2048-token window fits both turns.
    run = make_tiny_run(tmp_path_factory.mktemp("judge") / "judge", max_seq_len=2048)
    proc = ServerProcess(run, tmp_path_factory.mktemp("logs") / "judge.log")
    yield proc, run.name
    proc.stop()


def test_a_random_served_judge_is_counted_unparsed_not_fatal(judge_server):
    server, name = judge_server
    judge = EndpointClient(server.url + "/v1", name, concurrency=2)
    stories = judge_stories(judge, STORY_BEGINNINGS[:3], [" red.", " away.", " high."], max_new_tokens=8)
    assert stories.metrics == {"n": 3, "parsed": 0, "unparsed": 3, "parse_rate": 0.0}
    assert all(isinstance(i["reply"], str) and isinstance(i["assessment"], str) for i in stories.items)
    pairs = judge_pairwise(judge, ["What is a cat?"], ["A pet."], ["An animal."], max_new_tokens=8)
    single = judge_single(judge, ["What is a cat?"], ["A pet."], max_new_tokens=8)
    assert (pairs.unparsed, single.unparsed) == (1, 1)
