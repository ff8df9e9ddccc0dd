"""The tasks that read what a model writes: safety, story requests, judged stories, pairwise stories.

    result = run_generation_task("safety", generator)                    # -> TaskResult(kind="generation")
    result = run_generation_task("stories_judge", generator, judge=judge_client)
    versus = run_pairwise_stories(judge, first_result, other_result)     # other model's stories vs the first's

A generator is anything with `.chat` and `.complete` (LocalGenerator for a model directory, EndpointClient
for a server); the judge is one too, usually a bigger model behind an OpenAI-compatible endpoint. Every
result has the task's overall metrics, the prompts asked (`documents`), a few transcripts (`samples`: each
with "prompt" and "reply"), every reply (`replies`) and a per-row `breakdown`: safety by category, story
requests by kind. A judge reply the parser cannot read is counted (`unparsed`) and kept in the samples.

- safety: safety.py's bundled red-team and over-refusal prompts, one user turn each, greedy.
- story_requests: story_requests.py's checkable held-out instructions (a chat model's task).
- stories_judge: the model continues each of judge_prompts.STORY_BEGINNINGS greedily, as raw text; the
  judge grades every completion with the TinyStories rubric (judge.judge_stories).
- stories_pairwise: two models' completions of the same beginnings, judged pairwise in both orders
  (judge.judge_pairwise); rates are the later model's against the first.
"""

from __future__ import annotations

from dataclasses import dataclass

from slmkit.errors import ConfigError
from slmkit.eval.harness import TaskResult
from slmkit.eval.judge import JudgeResult, judge_pairwise, judge_stories
from slmkit.eval.judge_prompts import STORY_BEGINNINGS
from slmkit.eval.safety import TASK as SAFETY, run_safety
from slmkit.eval.story_requests import TASK as STORY_REQUESTS, run_story_requests

STORIES_JUDGE = "stories_judge"
STORIES_PAIRWISE = "stories_pairwise"
GENERATION_TASKS = {
    SAFETY: "refusals of unsafe requests and over-refusals of safe ones, by category",
    STORY_REQUESTS: "checkable held-out instructions (story requests, questions, multi-turn)",
    STORIES_JUDGE: "story completions graded by a judge model (TinyStories rubric; needs --judge)",
}
NEEDS_JUDGE = {STORIES_JUDGE}
CHAT_TASKS = {SAFETY, STORY_REQUESTS}  # replies to conversations: what a reward model scores
STORY_TOKENS = 160  # a completion long enough to finish the split sentence and end the story
SAMPLES_KEPT = 3
PAIRWISE_QUESTION = "Continue this story so that it makes sense and ends well:\n\n{beginning}"


@dataclass(frozen=True)
class GenerationSettings:
    limit: int | None = None  # at most this many prompts (safety: per category)
    seed: int = 0
    max_new_tokens: int | None = None  # None: each task's own default
    safety_categories: tuple[str, ...] | None = None  # None: all

    def tokens(self, default: int) -> int:
        return self.max_new_tokens or default


def run_generation_task(name: str, generator, judge=None,
                        settings: GenerationSettings = GenerationSettings()) -> TaskResult:
    if name in NEEDS_JUDGE and judge is None:
        raise ConfigError(f"the {name} task grades with a judge model: give --judge URL (and --judge-model NAME)")
    if name == SAFETY:
        return _safety(generator, settings)
    if name == STORY_REQUESTS:
        result = run_story_requests(generator, n=settings.limit or 60, seed=settings.seed,
                                    max_new_tokens=settings.tokens(160), keep_samples=SAMPLES_KEPT)
        return TaskResult(name, "generation", result.metrics, result.documents, samples=result.samples,
                          breakdown=result.by_kind, replies=result.replies, conversations=result.conversations)
    if name == STORIES_JUDGE:
        return _judged_stories(generator, judge, settings)
    raise ConfigError(f"unknown generation task {name!r}: choose one of {', '.join(GENERATION_TASKS)}")


def _safety(generator, settings: GenerationSettings) -> TaskResult:
    result = run_safety(generator, settings.safety_categories, max_new_tokens=settings.tokens(96),
                        seed=settings.seed, keep_samples=SAMPLES_KEPT, per_category=settings.limit)
    samples = [{"category": category, **row} for category, rows in result.samples.items() for row in rows]
    rows = [row for rows in result.transcripts.values() for row in rows]
    return TaskResult(SAFETY, "generation", result.overall_metrics(), len(rows), samples=samples,
                      breakdown=result.metrics_by_category(), replies=[row["reply"] for row in rows],
                      conversations=[[{"role": "user", "content": row["prompt"]}] for row in rows])


def story_beginnings(limit: int | None = None) -> list[str]:
    return STORY_BEGINNINGS[:limit] if limit else list(STORY_BEGINNINGS)


def _judged_stories(generator, judge, settings: GenerationSettings) -> TaskResult:
    beginnings = story_beginnings(settings.limit)
    completions = generator.complete(beginnings, max_new_tokens=settings.tokens(STORY_TOKENS), temperature=0.0,
                                     seed=settings.seed)
    graded = judge_stories(judge, beginnings, completions, seed=settings.seed)
    samples = [{"prompt": item["beginning"], "reply": item["completion"], "judge": item["reply"],
                "parsed": item["parsed"]} for item in _shown_items(graded)]
    return TaskResult(STORIES_JUDGE, "generation", graded.metrics, len(beginnings), samples=samples,
                      replies=list(completions))


def run_pairwise_stories(judge, first: TaskResult, other: TaskResult, first_name: str,
                         settings: GenerationSettings = GenerationSettings()) -> TaskResult:
    """`other`'s stories_judge completions against `first`'s (the same beginnings), in both orders."""
    beginnings = story_beginnings(settings.limit)[:len(first.replies)]
    questions = [PAIRWISE_QUESTION.format(beginning=b) for b in beginnings]
    answers_a = [b + c for b, c in zip(beginnings, other.replies)]
    answers_b = [b + c for b, c in zip(beginnings, first.replies)]
    judged = judge_pairwise(judge, questions, answers_a, answers_b, seed=settings.seed)
    samples = [{"prompt": item["question"], "reply": item["answer_a"], "against": first_name,
                "judge": item["reply_in_order"], "parsed": item["parsed"], "outcome": item.get("outcome")}
               for item in _shown_items(judged)]
    return TaskResult(STORIES_PAIRWISE, "generation", judged.metrics, len(questions), samples=samples)


def _shown_items(result: JudgeResult) -> list[dict]:
    """The first few items, then every unparsed one (a report shows the replies the parser could not read)."""
    shown = result.items[:SAMPLES_KEPT]
    return shown + [item for item in result.items[SAMPLES_KEPT:] if not item["parsed"]]
