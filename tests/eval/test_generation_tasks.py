"""Generation tasks through scripted generators and judges (known replies, so known metrics), the pairwise
story comparison, and run_evaluation / the report with safety, story requests and a judge wired in."""

from __future__ import annotations

import json

import pytest

from slmkit.errors import ConfigError
from slmkit.eval.evaluation_run import ModelToEvaluate, check_gates, parse_gates, run_evaluation
from slmkit.eval.generation import LocalGenerator
from slmkit.eval.generation_tasks import GenerationSettings, run_generation_task, run_pairwise_stories
from slmkit.eval.judge_prompts import STORY_BEGINNINGS
from slmkit.eval.report import task_tables, write_report
from slmkit.eval.safety_prompts import SAFETY_PROMPTS, UNSAFE_CATEGORIES

REFUSAL = "I'm sorry, but I can't help with that."
GOOD_GRADES = "Grammar: 8/10, Creativity: 6/10, Consistency: 7/10, Plot: 9/10, Age group: C"


class Scripted:
    """A generator (or judge) answering each conversation / prompt with a function of it."""

    def __init__(self, chat=lambda messages: "", complete=lambda prompt: " and they were happy."):
        self.answer_chat, self.answer_complete = chat, complete
        self.chats, self.completions = [], []

    def chat(self, conversations, max_new_tokens=128, temperature=0.0, seed=0):
        self.chats.extend(conversations)
        return [self.answer_chat(c) for c in conversations]

    def complete(self, prompts, max_new_tokens=128, temperature=0.0, seed=0, stop=None):
        self.completions.extend(prompts)
        return [self.answer_complete(p) for p in prompts]


def refuses_unsafe(messages):
    """Refuses exactly the bundled unsafe prompts; answers everything else."""
    prompt = messages[-1]["content"]
    unsafe = any(prompt in SAFETY_PROMPTS[c] for c in UNSAFE_CATEGORIES)
    return REFUSAL if unsafe else "Sure! Here is a clear, friendly answer to your question with some details."


def test_safety_breakdown_matches_a_model_that_refuses_exactly_the_unsafe_prompts():
    result = run_generation_task("safety", Scripted(chat=refuses_unsafe), settings=GenerationSettings(limit=4))
    assert result.kind == "generation" and result.documents == 4 * len(SAFETY_PROMPTS)
    assert result.metrics["unsafe_refusal_rate"] == 1.0 and result.metrics["over_refusal_rate"] == 0.0
    assert set(result.breakdown) == set(SAFETY_PROMPTS)
    assert all(row["n"] == 4 for row in result.breakdown.values())
    assert result.breakdown["over_refusal"]["refusal_rate"] == 0.0
    assert result.breakdown["hate"]["refusal_rate"] == 1.0
    assert len(result.replies) == result.documents and result.samples[0]["category"] == "dangerous"


def test_story_requests_keep_their_kinds_and_replies():
    result = run_generation_task("story_requests", Scripted(chat=lambda m: ""), settings=GenerationSettings(limit=9))
    assert result.documents == 9 and result.metrics["accuracy"] == 0.0
    assert sum(row["n"] for row in result.breakdown.values()) == 9 and result.replies == [""] * 9


def test_judged_stories_count_unparsed_replies_and_never_crash():
    replies = iter([])

    def judge_chat(messages):
        if len(messages) == 1:
            return "A fine story, mostly consistent."
        return next(replies)

    n = 4
    replies = iter([GOOD_GRADES, "I cannot grade this.", GOOD_GRADES, "Grammar: 8/10 only"])
    student = Scripted(complete=lambda prompt: " a shiny blue stone.")
    result = run_generation_task("stories_judge", student, judge=Scripted(chat=judge_chat),
                                 settings=GenerationSettings(limit=n))
    assert student.completions == STORY_BEGINNINGS[:n] and result.replies == [" a shiny blue stone."] * n
    assert result.metrics["parsed"] == 2 and result.metrics["unparsed"] == 2
    assert result.metrics["grammar"] == 8 and result.metrics["plot"] == 9
    unparsed = [s for s in result.samples if s["parsed"] is False]
    assert [s["judge"] for s in unparsed] == ["I cannot grade this.", "Grammar: 8/10 only"]
    with pytest.raises(ConfigError, match="--judge URL"):
        run_generation_task("stories_judge", student)


def test_pairwise_prefers_the_model_the_judge_prefers_in_both_orders():
    first = run_generation_task("stories_judge", Scripted(complete=lambda p: " blah"),
                                judge=Scripted(chat=lambda m: GOOD_GRADES), settings=GenerationSettings(limit=3))
    better = run_generation_task("stories_judge", Scripted(complete=lambda p: " a happy ending."),
                                 judge=Scripted(chat=lambda m: GOOD_GRADES), settings=GenerationSettings(limit=3))

    def prefers_happy(messages):  # the verdict names whichever position holds the happy ending
        text = messages[-1]["content"]
        a_part = text.split("[The Start of Assistant B's Answer]")[0]
        return "[[A]]" if "happy ending" in a_part else "[[B]]"

    versus = run_pairwise_stories(Scripted(chat=prefers_happy), first, better, "first")
    assert versus.metrics["win_rate"] == 1.0 and versus.metrics["position_consistency"] == 1.0
    assert versus.samples[0]["against"] == "first"
    reverse = run_pairwise_stories(Scripted(chat=prefers_happy), better, first, "better")
    assert reverse.metrics["loss_rate"] == 1.0


def test_run_evaluation_wires_generation_tasks_judge_and_pairwise(random_model, eval_tokenizer, tmp_path):
    judge = Scripted(chat=lambda m: GOOD_GRADES if len(m) > 1 else "Fine.")
    models = [ModelToEvaluate("local", random_model, eval_tokenizer, "mem://random"),
              ModelToEvaluate("scripted", generator=Scripted(chat=refuses_unsafe), path="scripted://")]
    settings = GenerationSettings(limit=2, max_new_tokens=6)
    results = run_evaluation(models, [], generation_tasks=["safety", "story_requests", "stories_judge"],
                             judge=judge, generation=settings, progress=False)
    assert set(results.results["local"]) == {"safety", "story_requests", "stories_judge"}
    assert results.results["scripted"]["safety"]["unsafe_refusal_rate"] == 1.0
    assert "stories_pairwise" in results.results["scripted"] and "stories_pairwise" not in results.results["local"]
    assert results.tasks["stories_pairwise"]["against"] == "local"
    assert set(results.breakdowns["local"]["safety"]) == set(SAFETY_PROMPTS)
    assert results.results["local"]["stories_judge"]["parsed"] == 2
    assert check_gates(results, parse_gates(["safety.harmful_compliance_rate=1.0"], "above")) == []
    titles = [title for title, _, _ in task_tables(results)]
    assert "safety by category" in titles and "story_requests by kind" in titles
    assert "stories_pairwise (generation, 2 documents, against local)" in titles
    write_report(results, tmp_path / "report")
    assert (tmp_path / "report" / "safety.png").read_bytes()[:4] == b"\x89PNG"
    md = (tmp_path / "report" / "report.md").read_text()
    assert "## safety by category" in md and "| scripted | hate | 2 | 1.0000 |" in md
    saved = json.loads((tmp_path / "report" / "results.json").read_text())
    assert saved["breakdowns"]["scripted"]["safety"]["over_refusal"]["refusal_rate"] == 0.0


def test_the_local_generator_continues_raw_prompts(random_model, eval_tokenizer):
    out = LocalGenerator(random_model, eval_tokenizer).complete(["Once upon a time", "Tom"], max_new_tokens=5)
    assert len(out) == 2 and all(isinstance(text, str) for text in out)
