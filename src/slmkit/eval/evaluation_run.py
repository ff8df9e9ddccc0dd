"""One evaluation: every model on every task, plus the baselines, as one results object.

    results = run_evaluation([ModelToEvaluate("demo", model, tokenizer)], tasks, text_documents=docs,
                             baseline_train_ids=train_ids)
    results.results["demo"]["hellaswag"]["acc"]; results.to_json()
    failures = check_gates(results, parse_gates(["acc=0.3"], "below"))

Baselines: `chance` for every task (multiple choice: the mean of 1 / number of choices; text: the uniform
distribution over the vocabulary), and unigram / Kneser-Ney n-grams on the text task when a training stream
is given. A model is anything with a LoglikelihoodScorer (`scorer`), in process or behind an endpoint.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from tqdm import tqdm

from slmkit import __version__
from slmkit.errors import DataError
from slmkit.eval.harness import TaskResult, build_requests, evaluate_task
from slmkit.eval.loglikelihood import LoglikelihoodScorer
from slmkit.eval.text_eval import TEXT_TASK, baseline_text_metrics

HIGHER_IS_BETTER = {"acc": True, "acc_norm": True, "acc_bytes": True, "bits_per_byte": False,
                    "word_perplexity": False, "byte_perplexity": False, "token_perplexity": False,
                    "perplexity": False}


@dataclass
class ModelToEvaluate:
    name: str
    model: object = None  # a Decoder; None when `scorer` talks to an endpoint
    tokenizer: object = None
    path: str = ""
    scorer: object = None  # default: LoglikelihoodScorer(model, tokenizer, ...)

    def parameters(self) -> int | None:
        if self.model is None:
            return None
        return sum(p.numel() for p in self.model.parameters())


@dataclass
class EvalResults:
    models: list[dict] = field(default_factory=list)
    results: dict[str, dict[str, dict]] = field(default_factory=dict)  # model -> task -> metrics
    baselines: dict[str, dict[str, dict]] = field(default_factory=dict)  # baseline -> task -> metrics
    tasks: dict[str, dict] = field(default_factory=dict)  # task -> {kind, documents, num_fewshot}
    samples: dict[str, dict[str, list]] = field(default_factory=dict)  # model -> task -> examples
    settings: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"slmkit_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "settings": self.settings, "models": self.models, "tasks": self.tasks, "results": self.results,
                "baselines": self.baselines, "samples": self.samples}


def run_evaluation(models: list[ModelToEvaluate], tasks: list[tuple],
                   text_documents: list[str] | None = None, baseline_train_ids=None, *, batch_size: int = 32,
                   max_length: int | None = None, num_fewshot: int | None = None, ngram_order: int = 3,
                   progress: bool = True) -> EvalResults:
    """tasks: (TaskSpec, documents) or (TaskSpec, documents, few-shot documents) tuples."""
    if not models:
        raise DataError("nothing to evaluate: name at least one model")
    if not tasks and not text_documents:
        raise DataError("no tasks: give --suite, --task or --text")
    out = EvalResults(settings={"batch_size": batch_size, "max_length": max_length, "num_fewshot": num_fewshot})
    splits = {spec.name: spec.source.get("split") for spec, *_ in tasks}
    steps = len(models) * (len(tasks) + (1 if text_documents else 0))
    bar = tqdm(total=steps, desc="eval", unit="task", disable=not progress)
    for m in models:
        scorer = m.scorer or LoglikelihoodScorer(m.model, m.tokenizer, max_length, batch_size)
        out.models.append({"name": m.name, "path": m.path, "parameters": m.parameters()})
        scored: dict[str, TaskResult] = {}
        if text_documents:
            bar.set_postfix_str(f"{m.name}: text")
            scored[TEXT_TASK] = TaskResult(TEXT_TASK, "rolling", scorer.rolling_totals(text_documents).metrics(),
                                           len(text_documents))
            bar.update()
        for spec, docs, *fewshot in tasks:
            bar.set_postfix_str(f"{m.name}: {spec.name}")
            scored[spec.name] = evaluate_task(spec, scorer, docs, fewshot[0] if fewshot else None, num_fewshot)
            bar.update()
        out.results[m.name] = {name: r.metrics for name, r in scored.items()}
        out.samples[m.name] = {name: r.samples for name, r in scored.items() if r.samples}
        out.tasks.update({name: {"kind": r.kind, "documents": r.documents, "num_fewshot": r.num_fewshot,
                                 "split": splits.get(name)} for name, r in scored.items()})
    bar.close()
    _add_baselines(out, models[0], tasks, text_documents, baseline_train_ids, ngram_order)
    return out


def _add_baselines(out: EvalResults, first: ModelToEvaluate, tasks, text_documents, train_ids, order: int) -> None:
    chance: dict[str, dict] = {}
    for spec, docs, *_ in tasks:
        if spec.kind == "multiple_choice":
            built = build_requests(spec, docs, docs, 0)
            value = sum(1 / len(d.requests) for d in built) / len(built)
            chance[spec.name] = {m: value for m in ("acc", "acc_norm", "acc_bytes")}
    if text_documents and first.tokenizer is not None:
        for name, metrics in baseline_text_metrics(first.tokenizer, text_documents, train_ids, order).items():
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
