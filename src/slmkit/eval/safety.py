"""The safety and red-team suite: does a chat model refuse unsafe requests, and answer safe ones that look unsafe?

The bundled prompts (`safety_prompts`: dangerous, personal_data, self_harm, hate, jailbreak and the
XSTest-style over_refusal set) are sent to a generator (anything with `.chat`: `LocalGenerator` or an
OpenAI-compatible `EndpointClient`) greedily, one user turn each, and every reply is labelled by string rules
with no classifier model (`safety_detectors`: refusal, harmful compliance, toxicity; the rules and their
limits are written there).

    result = run_safety(LocalGenerator(model, tokenizer))
    result.metrics_by_category()   # {"dangerous": {"n": 20, "refusal_rate": 0.9, ...}, ..., "over_refusal": {...}}
    result.overall_metrics()       # {"unsafe_refusal_rate": 0.85, "over_refusal_rate": 0.1, ...}
    result.samples["hate"]         # [{"prompt", "reply", "refusal", "harmful_compliance", "toxic", ...}, ...]

Per category: n, refusal_rate, empty_rate (empty replies, which count as refusals), toxicity_rate; unsafe
categories add harmful_compliance_rate, the over_refusal set adds over_refusal_rate (its refusal rate: safe
prompts refused). Overall rates pool the prompts (not a mean of the category rates). Higher is better for
unsafe_refusal_rate; lower is better for harmful_compliance_rate, over_refusal_rate and toxicity_rate.
"""

from __future__ import annotations

from dataclasses import dataclass

from slmkit.errors import ConfigError, DataError
from slmkit.eval.safety_detectors import (
    COMPLIANCE_MIN_WORDS, HEAD_CHARS, REFUSAL_PHRASES, REFUSAL_PREFIXES, TOXIC_THRESHOLD, is_empty_reply,
    is_harmful_compliance, is_refusal, refusal_head, toxic_words, toxicity_scores,
)
from slmkit.eval.safety_prompts import SAFE_CATEGORIES, SAFETY_PROMPTS, UNSAFE_CATEGORIES

TASK = "safety"

__all__ = [
    "COMPLIANCE_MIN_WORDS", "HEAD_CHARS", "REFUSAL_PHRASES", "REFUSAL_PREFIXES", "SAFETY_PROMPTS", "SAFE_CATEGORIES",
    "TOXIC_THRESHOLD", "UNSAFE_CATEGORIES", "SafetyResult", "is_empty_reply", "is_harmful_compliance", "is_refusal",
    "label_reply", "refusal_head", "run_safety", "toxic_words", "toxicity_scores",
]


def label_reply(prompt: str, reply: str, category: str, toxicity: float) -> dict:
    """One transcript with its labels; `harmful_compliance` is None for safe prompts (nothing harmful asked)."""
    unsafe = category in UNSAFE_CATEGORIES
    return {
        "prompt": prompt, "reply": reply,
        "refusal": is_refusal(reply), "empty": is_empty_reply(reply),
        "harmful_compliance": is_harmful_compliance(reply, category) if unsafe else None,
        "toxicity": toxicity, "toxic": toxicity >= TOXIC_THRESHOLD,
    }


def _rate(transcripts: list[dict], label: str) -> float:
    return sum(bool(t[label]) for t in transcripts) / len(transcripts) if transcripts else 0.0


def _category_metrics(category: str, transcripts: list[dict]) -> dict[str, float]:
    metrics = {"n": len(transcripts), "refusal_rate": _rate(transcripts, "refusal")}
    if category in UNSAFE_CATEGORIES:
        metrics["harmful_compliance_rate"] = _rate(transcripts, "harmful_compliance")
    else:
        metrics["over_refusal_rate"] = metrics["refusal_rate"]
    metrics["toxicity_rate"] = _rate(transcripts, "toxic")
    metrics["empty_rate"] = _rate(transcripts, "empty")
    return metrics


@dataclass
class SafetyResult:
    """Every labelled transcript, by category in run order; metrics are computed from them."""

    transcripts: dict[str, list[dict]]
    keep_samples: int = 3

    def metrics_by_category(self) -> dict[str, dict[str, float]]:
        """{category: {metric: value}}: one report-table row per category."""
        return {category: _category_metrics(category, rows) for category, rows in self.transcripts.items()}

    def overall_metrics(self) -> dict[str, float]:
        """Pooled over prompts: unsafe_refusal_rate and harmful_compliance_rate over the unsafe categories run,
        over_refusal_rate over the safe ones, toxicity_rate over all."""
        unsafe = [t for c, rows in self.transcripts.items() if c in UNSAFE_CATEGORIES for t in rows]
        safe = [t for c, rows in self.transcripts.items() if c in SAFE_CATEGORIES for t in rows]
        metrics = {"n": len(unsafe) + len(safe)}
        if unsafe:
            metrics.update(n_unsafe=len(unsafe), unsafe_refusal_rate=_rate(unsafe, "refusal"),
                           harmful_compliance_rate=_rate(unsafe, "harmful_compliance"))
        if safe:
            metrics.update(n_safe=len(safe), over_refusal_rate=_rate(safe, "refusal"))
        metrics["toxicity_rate"] = _rate(unsafe + safe, "toxic")
        return metrics

    @property
    def samples(self) -> dict[str, list[dict]]:
        """The first `keep_samples` transcripts of each category, for a report's examples."""
        return {category: rows[:self.keep_samples] for category, rows in self.transcripts.items()}


def _chosen_categories(categories) -> list[str]:
    chosen = list(SAFETY_PROMPTS) if categories is None else list(dict.fromkeys(categories))  # no repeats
    unknown = [c for c in chosen if c not in SAFETY_PROMPTS]
    if unknown or not chosen:
        raise ConfigError(f"unknown or no safety categories {unknown or chosen}; choose from {', '.join(SAFETY_PROMPTS)}")
    return chosen


def run_safety(generator, categories=None, max_new_tokens: int = 96, seed: int = 0,
               keep_samples: int = 3, per_category: int | None = None) -> SafetyResult:
    """Send every bundled prompt of `categories` (default: all; at most `per_category` of each) to
    `generator` greedily and label the replies.

    All prompts go in one `.chat` call, so a local model decodes them as one continuous batch.
    """
    chosen = _chosen_categories(categories)
    asked = [(category, prompt) for category in chosen for prompt in SAFETY_PROMPTS[category][:per_category]]
    conversations = [[{"role": "user", "content": prompt}] for _, prompt in asked]
    replies = generator.chat(conversations, max_new_tokens=max_new_tokens, temperature=0.0, seed=seed)
    if len(replies) != len(asked):
        raise DataError(f"the generator returned {len(replies)} replies for {len(asked)} safety prompts")
    transcripts: dict[str, list[dict]] = {category: [] for category in chosen}
    for (category, prompt), reply, toxicity in zip(asked, replies, toxicity_scores(replies)):
        transcripts[category].append(label_reply(prompt, reply, category, toxicity))
    return SafetyResult(transcripts, keep_samples)
