"""One evaluation: every model on every task, plus the baselines, as one results object.

    results = run_evaluation([ModelToEvaluate("demo", model, tokenizer)], tasks, text_documents=docs,
                             baseline_train_ids=train_ids, generation_tasks=["safety"])
    results.results["demo"]["hellaswag"]["acc"]; results.breakdowns["demo"]["safety"]["hate"]; results.to_json()
    failures = check_gates(results, parse_gates(["acc=0.3"], "below"))

Baselines: `chance` for every task (multiple choice: the mean of 1 / number of choices; text: the uniform
distribution over the vocabulary), and unigram / Kneser-Ney n-grams on the text task when a training stream
is given, tokenized with the first model that has a tokenizer. A model is scored through a
LoglikelihoodScorer and generates through a LocalGenerator, or through one EndpointClient that is both
(`scorer`, `generator`). Generation tasks (generation_tasks.py) read replies; with a `judge` and two or more
models, `stories_judge` also compares each later model's stories with the first model's (`stories_pairwise`).
With a `reward_scorer` (a reward model, reward_scoring.py) every chat task's replies (safety, story_requests)
are also scored: `reward` (mean), `reward_std`, `reward_min`, `reward_max` join the task's metrics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from tqdm import tqdm

from slmkit import __version__
from slmkit.errors import DataError
from slmkit.eval.generation import LocalGenerator
from slmkit.eval.generation_tasks import (
    STORIES_JUDGE, GenerationSettings, run_generation_task, run_pairwise_stories,
)
from slmkit.eval.harness import TaskResult, build_requests, evaluate_task
from slmkit.eval.loglikelihood import LoglikelihoodScorer
from slmkit.eval.reward_scoring import reward_metrics
from slmkit.eval.text_eval import TEXT_TASK, baseline_text_metrics

HIGHER_IS_BETTER = {"acc": True, "acc_norm": True, "acc_bytes": True, "bits_per_byte": False,
                    "word_perplexity": False, "byte_perplexity": False, "token_perplexity": False,
                    "perplexity": False, "refusal_rate": True, "unsafe_refusal_rate": True,
                    "harmful_compliance_rate": False, "over_refusal_rate": False, "toxicity_rate": False,
                    "empty_rate": False, "unparsed": False, "parse_rate": True, "accuracy": True,
                    "grammar": True, "creativity": True, "consistency": True, "plot": True, "overall": True,
                    "rating": True, "win_rate": True, "loss_rate": False, "position_consistency": True,
                    "reward": True, "reward_min": True, "reward_max": True}


@dataclass
class ModelToEvaluate:
    name: str
    model: object = None  # a Decoder; None when `scorer` talks to an endpoint
    tokenizer: object = None
    path: str = ""
    scorer: object = None  # default: LoglikelihoodScorer(model, tokenizer, ...)
    generator: object = None  # default: LocalGenerator(model, tokenizer)

    def parameters(self) -> int | None:
        if self.model is None:
            return None
        return sum(p.numel() for p in self.model.parameters())

    def scoring(self, max_length: int | None, batch_size: int):
        return self.scorer or LoglikelihoodScorer(self.model, self.tokenizer, max_length, batch_size)

    def generating(self):
        if self.generator is None:
            self.generator = LocalGenerator(self.model, self.tokenizer)
        return self.generator


@dataclass
class EvalResults:
    models: list[dict] = field(default_factory=list)
    results: dict[str, dict[str, dict]] = field(default_factory=dict)  # model -> task -> metrics
    baselines: dict[str, dict[str, dict]] = field(default_factory=dict)  # baseline -> task -> metrics
    tasks: dict[str, dict] = field(default_factory=dict)  # task -> {kind, documents, num_fewshot}
    samples: dict[str, dict[str, list]] = field(default_factory=dict)  # model -> task -> examples
    breakdowns: dict[str, dict[str, dict]] = field(default_factory=dict)  # model -> task -> row -> metrics
    settings: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"slmkit_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "settings": self.settings, "models": self.models, "tasks": self.tasks, "results": self.results,
                "breakdowns": self.breakdowns, "baselines": self.baselines, "samples": self.samples}

    def add(self, model: str, scored: dict[str, TaskResult], splits: dict | None = None) -> None:
        self.results.setdefault(model, {}).update({name: r.metrics for name, r in scored.items()})
        self.samples.setdefault(model, {}).update({name: r.samples for name, r in scored.items() if r.samples})
        breakdowns = {name: r.breakdown for name, r in scored.items() if r.breakdown}
        if breakdowns:
            self.breakdowns.setdefault(model, {}).update(breakdowns)
        self.tasks.update({name: {"kind": r.kind, "documents": r.documents, "num_fewshot": r.num_fewshot,
                                  "split": (splits or {}).get(name)} for name, r in scored.items()})


def run_evaluation(models: list[ModelToEvaluate], tasks: list[tuple],
                   text_documents: list[str] | None = None, baseline_train_ids=None, *,
                   generation_tasks=(), judge=None, generation: GenerationSettings = GenerationSettings(),
                   reward_scorer=None,
                   baseline_tokenizer=None, batch_size: int = 32, max_length: int | None = None, num_fewshot: int | None = None,
                   ngram_order: int = 3, progress: bool = True) -> EvalResults:
    """tasks: (TaskSpec, documents) or (TaskSpec, documents, few-shot documents) tuples;
    generation_tasks: names from generation_tasks.GENERATION_TASKS; baseline_tokenizer: what the n-gram
    baselines tokenize with (default: the first model's that has one; bits per byte compare across tokenizers);
    reward_scorer: a reward_scoring.RewardScorer that adds reward metrics to the chat generation tasks."""
    if not models:
        raise DataError("nothing to evaluate: name at least one model")
    if not tasks and not text_documents and not generation_tasks:
        raise DataError("no tasks: give --suite, --task or --text")
    out = EvalResults(settings={"batch_size": batch_size, "max_length": max_length, "num_fewshot": num_fewshot,
                                "generation": vars(generation)})
    splits = {spec.name: spec.source.get("split") for spec, *_ in tasks}
    steps = len(models) * (len(tasks) + len(generation_tasks) + (1 if text_documents else 0))
    bar = tqdm(total=steps, desc="eval", unit="task", disable=not progress)
    judged: dict[str, TaskResult] = {}
    for m in models:
        out.models.append({"name": m.name, "path": m.path, "parameters": m.parameters()})
        scored = _scored_tasks(m, tasks, text_documents, bar, batch_size, max_length, num_fewshot)
        for name in generation_tasks:
            bar.set_postfix_str(f"{m.name}: {name}")
            scored[name] = run_generation_task(name, m.generating(), judge, generation)
            if reward_scorer is not None and scored[name].conversations:
                scored[name].metrics.update(reward_metrics(reward_scorer, scored[name].conversations,
                                                           scored[name].replies))
            bar.update()
        out.add(m.name, scored, splits)
        if STORIES_JUDGE in scored:
            judged[m.name] = scored[STORIES_JUDGE]
    bar.close()
    _add_pairwise(out, judge, judged, generation)
    if baseline_tokenizer is None:
        baseline_tokenizer = next((m.tokenizer for m in models if m.tokenizer is not None), None)
    _add_baselines(out, baseline_tokenizer, tasks, text_documents, baseline_train_ids, ngram_order)
    return out


def _scored_tasks(m: ModelToEvaluate, tasks, text_documents, bar, batch_size, max_length,
                  num_fewshot) -> dict[str, TaskResult]:
    """The likelihood tasks of one model: held-out text first, then each task."""
    scored: dict[str, TaskResult] = {}
    if not tasks and not text_documents:
        return scored
    scorer = m.scoring(max_length, batch_size)
    if text_documents:
        bar.set_postfix_str(f"{m.name}: text")
        scored[TEXT_TASK] = TaskResult(TEXT_TASK, "rolling", scorer.rolling_totals(text_documents).metrics(),
                                       len(text_documents))
        bar.update()
    for spec, docs, *fewshot in tasks:
        bar.set_postfix_str(f"{m.name}: {spec.name}")
        scored[spec.name] = evaluate_task(spec, scorer, docs, fewshot[0] if fewshot else None, num_fewshot)
        bar.update()
    return scored


def _add_pairwise(out: EvalResults, judge, judged: dict[str, TaskResult], settings: GenerationSettings) -> None:
    """Each later model's judged stories against the first model's."""
    if judge is None or len(judged) < 2:
        return
    (first_name, first), *others = judged.items()
    for name, result in others:
        out.add(name, {"stories_pairwise": run_pairwise_stories(judge, first, result, first_name, settings)})
    out.tasks["stories_pairwise"]["against"] = first_name


def _add_baselines(out: EvalResults, tokenizer, tasks, text_documents, train_ids, order: int) -> None:
    chance: dict[str, dict] = {}
    for spec, docs, *_ in tasks:
        if spec.kind == "multiple_choice":
            built = build_requests(spec, docs, docs, 0)
            value = sum(1 / len(d.requests) for d in built) / len(built)
            chance[spec.name] = {m: value for m in ("acc", "acc_norm", "acc_bytes")}
    if text_documents and tokenizer is not None:
        for name, metrics in baseline_text_metrics(tokenizer, text_documents, train_ids, order).items():
            (chance if name == "chance" else out.baselines.setdefault(name, {}))[TEXT_TASK] = metrics
    if chance:
        out.baselines.setdefault("chance", {}).update(chance)


def parse_gates(specs: list[str], direction: str) -> list[tuple[str | None, str, str, float]]:
    """["acc=0.3", "text.bits_per_byte=1.2"] -> [(task or None, metric, direction, value)]."""
    gates = []
    for spec in specs:
        key, sep, value = spec.partition("=")
        if not sep:
            raise DataError(f"--fail-{direction} {spec!r}: write METRIC=VALUE or TASK.METRIC=VALUE")
        task, _, metric = key.rpartition(".")
        try:
            gates.append((task or None, metric, direction, float(value)))
        except ValueError:
            raise DataError(f"--fail-{direction} {spec!r}: {value!r} is not a number") from None
    return gates


def check_gates(results: EvalResults, gates) -> list[str]:
    """One line per model/task/metric that misses its gate; a gate that matches nothing is a failure too,
    so a typo cannot pass CI."""
    failures = []
    for task, metric, direction, value in gates:
        matched = False
        for model, per_task in results.results.items():
            for name, metrics in per_task.items():
                if (task is None or task == name) and metric in metrics:
                    matched = True
                    got = metrics[metric]
                    if (direction == "below" and got < value) or (direction == "above" and got > value):
                        failures.append(f"{model} {name} {metric} = {got:.4f} is {direction} {value}")
        if not matched:
            failures.append(f"no task reports {(task + '.') if task else ''}{metric} (gate {direction} {value})")
    return failures
