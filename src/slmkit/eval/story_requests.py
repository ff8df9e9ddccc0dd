"""Checkable story requests for chat models: does the fine-tuned model do what it was asked?

The held-out split of the synthetic instruction data (`slm data sft-synthetic`'s generator, casts never
seen in training) asks for a story about a named character with an object, asks questions about a story,
and holds multi-turn conversations. Each example carries a `check` that code can verify
(data/sources/instruction_checks.py: the reply must mention every required item and none of the rejected
ones), so no judge model is needed. Metrics: accuracy per kind (story_request, story_question, multi_turn)
and over all, with a few transcripts.

    result = run_story_requests(LocalGenerator(model, tokenizer), n=60)
    result.metrics   # {"accuracy": 0.42, "story_request_accuracy": ..., ...}
"""

from __future__ import annotations

from dataclasses import dataclass, field

from slmkit.data.sources.instruction_checks import check_answer, prompt_and_reference, score_answers
from slmkit.data.sources.instructions import generate_instruction_examples

TASK = "story_requests"


@dataclass
class StoryRequestResult:
    metrics: dict[str, float]
    documents: int
    samples: list[dict] = field(default_factory=list)
    by_kind: dict[str, dict] = field(default_factory=dict)  # kind -> {"n", "correct", "accuracy"}
    replies: list[str] = field(default_factory=list)
    conversations: list[list[dict]] = field(default_factory=list)  # what each reply answers


def run_story_requests(generator, n: int = 60, seed: int = 0, max_new_tokens: int = 160,
                       keep_samples: int = 6) -> StoryRequestResult:
    """Ask `generator` (anything with `.chat`) `n` held-out requests greedily and check its replies."""
    examples = list(generate_instruction_examples(n, seed=seed, split="heldout"))
    conversations = [prompt_and_reference(e)[0] for e in examples]
    replies = generator.chat(conversations, max_new_tokens=max_new_tokens, temperature=0.0, seed=seed)
    scores = score_answers(examples, replies)
    metrics = {"accuracy": scores["all"]["accuracy"]}
    metrics.update({f"{kind}_accuracy": row["accuracy"] for kind, row in scores.items() if kind != "all"})
    samples = [{"prompt": c[-1]["content"], "reply": r, "check": e["check"], "ok": check_answer(e["check"], r)}
               for c, r, e in list(zip(conversations, replies, examples))[:keep_samples]]
    by_kind = {kind: row for kind, row in scores.items() if kind != "all"}
    return StoryRequestResult(metrics, len(examples), samples, by_kind, list(replies), conversations)
