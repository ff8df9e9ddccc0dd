"""LLM-as-judge through anything with `.chat(conversations, max_new_tokens, temperature, seed)`: an
`EndpointClient` (any OpenAI-compatible server) or a `LocalGenerator`.

    result = judge_stories(judge, STORY_BEGINNINGS, completions)     # TinyStories' GPT-Eval rubric
    result.metrics   # {"n": 40, "parsed": 38, "unparsed": 2, "parse_rate": 0.95, "grammar": 7.1, ...}
    result.unparsed_items()                                         # the replies the parser could not read
    judge_single(judge, questions, answers)                         # MT-Bench single-v1: rating 1-10
    judge_pairwise(judge, questions, answers_a, answers_b)          # MT-Bench pair-v2, both orders

- Stories: a two-turn conversation per completion (the beginning, `***`, the completion and a request for a
  general assessment; then, after the judge's own assessment, the grading turn). Grammar, creativity,
  consistency and plot (0-10) are read from the grading reply with tolerant patterns ("Grammar: 8/10",
  "grammar - 8", "**Grammar**: 8", JSON); all four are needed. The age group (A-F) is kept when given.
- Single: "[[rating]]", falling back to "[rating]" (FastChat's patterns); ratings outside 1-10 are unparsed.
- Pairwise: each pair is judged twice, the answers swapped the second time (MT-Bench's cure for position
  bias); a verdict stands only when both orders agree, otherwise the pair is a tie. Rates are from
  answers_a's side (win: a is better); position_consistency is the share of pairs whose two verdicts agree.

Metrics are means over parsed items, beside n, parsed, unparsed and parse_rate. A reply the parser cannot
read never stops the run: it is counted and kept, with the raw text, in `items`. All conversations of a
turn go to one `chat` call, so the client decides the concurrency.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from slmkit.errors import DataError
from slmkit.eval.harness import mean_stderr
from slmkit.eval.judge_prompts import (
    AGE_GROUPS, PAIR_PROMPT, PAIR_SYSTEM_PROMPT, SINGLE_PROMPT, SINGLE_SYSTEM_PROMPT, STORY_ASSESSMENT_PROMPT,
    STORY_BEGINNINGS, STORY_GRADING_PROMPT, STORY_SEPARATOR,
)

__all__ = ["JudgeResult", "STORY_BEGINNINGS", "StoryGrades", "judge_pairwise", "judge_single", "judge_stories",
           "parse_rating", "parse_story_grades", "parse_verdict", "story_for_judge"]

JUDGE_MAX_NEW_TOKENS = 512  # room for an explanation before the verdict
STORY_CRITERIA = ("grammar", "creativity", "consistency", "plot")
_CRITERION_STEMS = {"grammar": "gramma", "creativity": "creativ", "consistency": "consisten", "plot": "plot"}


@dataclass
class JudgeResult:
    metrics: dict[str, float]
    items: list[dict]  # one per judged item: its inputs, the judge's raw replies, parsed values, "parsed"
    unparsed: int

    @property
    def parse_rate(self) -> float:
        return self.metrics["parse_rate"]

    def unparsed_items(self) -> list[dict]:
        """The items whose judge replies could not be read (raw replies included), to show the user."""
        return [item for item in self.items if not item["parsed"]]


@dataclass(frozen=True)
class StoryGrades:
    grammar: float
    creativity: float
    consistency: float
    plot: float
    age_group: str | None  # "A" (3 or under) ... "F" (13-16), None when the judge gave none

    @property
    def overall(self) -> float:
        return (self.grammar + self.creativity + self.consistency + self.plot) / 4


# ----------------------------------------------------------------------------------------- parsing

def _score_pattern(stem: str) -> re.Pattern:
    return re.compile(
        rf"\b{stem}\w*"                        # the criterion: Grammar, grammatical, Consistency, plot
        r"(?:[ \t]+[a-z'’]+){0,6}?"            # label words: "consistency with the story's beginning"
        r"(?:[ \t]*\([^()\n]{0,60}\))?"        # a parenthesis: "Plot (makes sense)"
        r"[\s*_:=|\"'\-–—]*"                   # separators and markdown: ": ", " - ", "**: ", " | ", '": '
        r"(\d+(?:\.\d+)?)"                     # the score
        r"(?:\s*\**\s*(?:/|out\s+of)\s*(\d+))?",  # "/10", "out of 10"
        re.IGNORECASE)


_SCORE_PATTERNS = {name: _score_pattern(stem) for name, stem in _CRITERION_STEMS.items()}
# "Age group: C", "**Age**: C (6-7)", '"estimated_age_group": "C"'; the letter itself must be a capital.
_AGE_LETTER = re.compile(r"(?i:(?<![a-z])age)[\w ]{0,20}?[\s*_:=|\"'\-–—(]*([A-F])\b")
_AGE_RANGE = re.compile(r"(?i:(?<![a-z])age)[^\n]{0,40}?(3 or under|4-5|6-7|8-9|10-12|13-16)")
_AGE_BY_RANGE = {ages: letter for letter, ages in AGE_GROUPS.items()}
_RATING = re.compile(r"\[\[(\d+\.?\d*)\]\]")
_RATING_FALLBACK = re.compile(r"\[(\d+\.?\d*)\]")
_VERDICT = re.compile(r"\[\[([ABC])\]\]")
_VERDICT_FALLBACK = re.compile(r"\[([ABC])\]")


def parse_story_grades(reply: str) -> StoryGrades | None:
    """The four 0-10 grades and the age group from a grading reply; None unless all four grades are found
    and in range (a grade over another scale, "8/100", is not a 0-10 grade either)."""
    scores = {}
    for name, pattern in _SCORE_PATTERNS.items():
        match = pattern.search(reply)
        if match is None or (match.group(2) is not None and match.group(2) != "10"):
            return None
        value = float(match.group(1))
        if not 0 <= value <= 10:
            return None
        scores[name] = value
    return StoryGrades(**scores, age_group=_age_group(reply))


def _age_group(reply: str) -> str | None:
    letter = _AGE_LETTER.search(reply)
    if letter:
        return letter.group(1)
    ages = _AGE_RANGE.search(reply)  # "Age group: 6-7", without the letter
    return _AGE_BY_RANGE[ages.group(1)] if ages else None


def parse_rating(reply: str) -> float | None:
    """MT-Bench's "[[rating]]" (first match; "[rating]" as a fallback), None when missing or outside 1-10."""
    match = _RATING.search(reply) or _RATING_FALLBACK.search(reply)
    if match is None:
        return None
    value = float(match.group(1))
    return value if 1 <= value <= 10 else None


def parse_verdict(reply: str) -> str | None:
    """"A", "B" or "tie" from pair-v2's "[[A]]" / "[[B]]" / "[[C]]" ("[A]" as a fallback); the last one
    written counts, since judges often quote the format before giving their final verdict."""
    found = _VERDICT.findall(reply) or _VERDICT_FALLBACK.findall(reply)
    if not found:
        return None
    return {"A": "A", "B": "B", "C": "tie"}[found[-1]]


# ----------------------------------------------------------------------------------------- judging

def story_for_judge(beginning: str, completion: str) -> str:
    """The exercise as the judge sees it: the prescribed beginning, `***`, the student's completion."""
    return beginning + STORY_SEPARATOR + completion


def judge_stories(judge, beginnings: list[str], completions: list[str], *,
                  max_new_tokens: int = JUDGE_MAX_NEW_TOKENS, temperature: float = 0.0, seed: int = 0,
                  grading_prompt: str = STORY_GRADING_PROMPT) -> JudgeResult:
    """Grade each completion of the beginning beside it (lists of equal length; repeat a beginning for
    several completions) with TinyStories' two-turn rubric."""
    _same_length(beginnings=beginnings, completions=completions)
    first_turns = [[{"role": "user", "content": STORY_ASSESSMENT_PROMPT.format(story=story_for_judge(b, c))}]
                   for b, c in zip(beginnings, completions)]
    settings = dict(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    assessments = _ask(judge, first_turns, settings)
    second_turns = [turn + [{"role": "assistant", "content": assessment}, {"role": "user", "content": grading_prompt}]
                    for turn, assessment in zip(first_turns, assessments)]
    replies = _ask(judge, second_turns, settings)
    items = []
    for beginning, completion, assessment, reply in zip(beginnings, completions, assessments, replies):
        grades = parse_story_grades(reply)
        item = {"beginning": beginning, "completion": completion, "assessment": assessment, "reply": reply,
                "parsed": grades is not None}
        if grades is not None:
            item.update({name: getattr(grades, name) for name in STORY_CRITERIA}, age_group=grades.age_group)
        items.append(item)
    parsed = [item for item in items if item["parsed"]]
    metrics = _mean_metrics(parsed, STORY_CRITERIA)
    if parsed:
        metrics.update(_mean_metrics([{"overall": sum(i[c] for c in STORY_CRITERIA) / 4} for i in parsed],
                                     ("overall",)))
    ages = [item["age_group"] for item in parsed if item["age_group"]]
    if ages:  # the share of each age group among the replies that named one
        metrics.update({f"age_{letter}": ages.count(letter) / len(ages) for letter in AGE_GROUPS})
    return _result(items, metrics)


def judge_single(judge, questions: list[str], answers: list[str], *, max_new_tokens: int = JUDGE_MAX_NEW_TOKENS,
                 temperature: float = 0.0, seed: int = 0) -> JudgeResult:
    """Rate each answer to the question beside it 1-10 with MT-Bench's single-v1 prompt."""
    _same_length(questions=questions, answers=answers)
    conversations = [_system_and_user(SINGLE_SYSTEM_PROMPT, SINGLE_PROMPT.format(question=q, answer=a))
                     for q, a in zip(questions, answers)]
    replies = _ask(judge, conversations, dict(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed))
    items = []
    for question, answer, reply in zip(questions, answers, replies):
        rating = parse_rating(reply)
        items.append({"question": question, "answer": answer, "reply": reply, "rating": rating,
                      "parsed": rating is not None})
    return _result(items, _mean_metrics([i for i in items if i["parsed"]], ("rating",)))


def judge_pairwise(judge, questions: list[str], answers_a: list[str], answers_b: list[str], *,
                   max_new_tokens: int = JUDGE_MAX_NEW_TOKENS, temperature: float = 0.0, seed: int = 0) -> JudgeResult:
    """Compare answers_a[i] with answers_b[i] with MT-Bench's pair-v2 prompt, in both orders. Rates are
    answers_a's: win_rate (a better in both orders), loss_rate, tie_rate (a tie, or the orders disagree),
    and position_consistency (the orders agree)."""
    _same_length(questions=questions, answers_a=answers_a, answers_b=answers_b)

    def conversation(question: str, first: str, second: str) -> list[dict]:
        return _system_and_user(PAIR_SYSTEM_PROMPT, PAIR_PROMPT.format(question=question, answer_a=first,
                                                                       answer_b=second))

    in_order = [conversation(q, a, b) for q, a, b in zip(questions, answers_a, answers_b)]
    swapped = [conversation(q, b, a) for q, a, b in zip(questions, answers_a, answers_b)]
    replies = _ask(judge, in_order + swapped, dict(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed))
    n = len(questions)
    items = [_pair_item(q, a, b, replies[k], replies[n + k])
             for k, (q, a, b) in enumerate(zip(questions, answers_a, answers_b))]
    parsed = [item for item in items if item["parsed"]]
    metrics = {}
    if parsed:
        outcomes = [item["outcome"] for item in parsed]
        metrics = {f"{name}_rate": outcomes.count(name) / len(parsed) for name in ("win", "loss", "tie")}
        metrics["position_consistency"] = sum(item["consistent"] for item in parsed) / len(parsed)
    return _result(items, metrics)


def _pair_item(question: str, answer_a: str, answer_b: str, reply_in_order: str, reply_swapped: str) -> dict:
    """One pair's two verdicts, each said as which answer won ("a", "b", "tie"), and the outcome for a."""
    in_order = {"A": "a", "B": "b", "tie": "tie"}.get(parse_verdict(reply_in_order))
    swapped = {"A": "b", "B": "a", "tie": "tie"}.get(parse_verdict(reply_swapped))  # positions were swapped
    item = {"question": question, "answer_a": answer_a, "answer_b": answer_b, "reply_in_order": reply_in_order,
            "reply_swapped": reply_swapped, "verdict_in_order": in_order, "verdict_swapped": swapped,
            "parsed": in_order is not None and swapped is not None}
    if item["parsed"]:
        item["consistent"] = in_order == swapped
        winner = in_order if item["consistent"] else "tie"
        item["outcome"] = {"a": "win", "b": "loss", "tie": "tie"}[winner]
    return item


def _ask(judge, conversations: list[list[dict]], settings: dict) -> list[str]:
    """The judge's replies, one per conversation (one `chat` call: the client runs them concurrently)."""
    if not conversations:
        return []
    replies = list(judge.chat(conversations, **settings))
    if len(replies) != len(conversations):
        raise DataError(f"the judge returned {len(replies)} replies for {len(conversations)} conversations")
    return ["" if r is None else str(r) for r in replies]


def _system_and_user(system: str, user: str) -> list[dict]:
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def _mean_metrics(parsed: list[dict], names) -> dict[str, float]:
    """Mean and standard error of each named value over the parsed items (none when nothing parsed)."""
    metrics: dict[str, float] = {}
    for name in names:
        values = [float(item[name]) for item in parsed]
        if values:
            metrics[name] = sum(values) / len(values)
            metrics[f"{name}_stderr"] = mean_stderr(values)
    return metrics


def _result(items: list[dict], metrics: dict[str, float]) -> JudgeResult:
    parsed = sum(item["parsed"] for item in items)
    unparsed = len(items) - parsed
    counts = {"n": len(items), "parsed": parsed, "unparsed": unparsed,
              "parse_rate": parsed / len(items) if items else 0.0}
    return JudgeResult({**counts, **metrics}, items, unparsed)


def _same_length(**lists: list) -> None:
    lengths = {name: len(values) for name, values in lists.items()}
    if len(set(lengths.values())) > 1:
        raise DataError("the judge needs lists of equal length, one entry per item; got "
                        + ", ".join(f"{len(v)} {name}" for name, v in lists.items()))
    if any(not isinstance(v, str) for values in lists.values() for v in values):
        raise DataError("the judge's inputs must be strings")
