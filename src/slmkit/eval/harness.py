"""Running a task: documents -> log-likelihood requests -> per-document scores -> metrics.

    result = evaluate_task(spec, scorer, docs)             # scorer: LoglikelihoodScorer or an endpoint's
    result.metrics   # {"acc": 0.31, "acc_stderr": 0.02, "acc_norm": 0.33, ...}

Metrics (lm-eval's definitions, lm_eval/api/task.py and metrics.py):
- multiple_choice: acc (argmax of the choices' log-likelihoods is the gold), acc_norm (argmax of
  log-likelihood / characters of the choice), acc_bytes (/ UTF-8 bytes of the choice); each with its
  standard error, sample standard deviation / sqrt(n).
- loglikelihood: perplexity = exp(-mean log-likelihood of the continuation), acc = the continuation is the
  model's greedy one.
- rolling: word_perplexity, byte_perplexity, bits_per_byte over the whole corpus (likelihood.py).
Few-shot examples are drawn with random.Random(seed) from the task's few-shot documents (never the
document itself): description + examples joined by fewshot_delimiter + fewshot_delimiter + query.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from slmkit.errors import DataError
from slmkit.eval.likelihood import LikelihoodTotals
from slmkit.eval.task_spec import TaskSpec

FEWSHOT_SEED = 1234


@dataclass
class TaskResult:
    name: str
    kind: str
    metrics: dict[str, float]
    documents: int
    num_fewshot: int = 0
    samples: list[dict] = field(default_factory=list)  # per document: prompt, choices, gold, log-likelihoods, pick
    breakdown: dict[str, dict] = field(default_factory=dict)  # generation tasks: row (category, kind) -> metrics
    replies: list[str] = field(default_factory=list)  # generation tasks: what the model wrote, per prompt
    conversations: list[list[dict]] = field(default_factory=list)  # chat tasks: the messages each reply answers


@dataclass
class _DocRequests:
    requests: list[tuple[str, str]]  # (context, continuation) per choice, or the single one
    choices: list[str]  # the text each choice's length is measured on (acc_norm, acc_bytes)
    gold: int
    text: str = ""  # rolling: the text scored


def evaluate_task(spec: TaskSpec, scorer, docs: list[dict], fewshot_docs: list[dict] | None = None,
                  num_fewshot: int | None = None, seed: int = FEWSHOT_SEED, keep_samples: int = 20) -> TaskResult:
    """Score `docs` with `scorer` (anything with loglikelihood / loglikelihood_rolling / rolling_totals)."""
    shots = spec.num_fewshot if num_fewshot is None else num_fewshot
    if spec.kind == "rolling":
        return _rolling_result(spec, scorer, docs, keep_samples)
    built = build_requests(spec, docs, fewshot_docs if fewshot_docs is not None else docs, shots, seed)
    flat = [r for d in built for r in d.requests]
    scored = scorer.loglikelihood(flat)
    per_doc, k = [], 0
    for d in built:
        per_doc.append(scored[k:k + len(d.requests)])
        k += len(d.requests)
    if spec.kind == "loglikelihood":
        metrics = _loglikelihood_metrics(per_doc)
    else:
        metrics = _choice_metrics(built, per_doc)
    if spec.metrics:  # the task reports only these (and their standard errors)
        metrics = {k: v for k, v in metrics.items() if k.removesuffix("_stderr") in spec.metrics}
    samples = [_sample(d, s) for d, s in zip(built[:keep_samples], per_doc)]
    return TaskResult(spec.name, spec.kind, metrics, len(docs), shots, samples)


def build_requests(spec: TaskSpec, docs: list[dict], fewshot_docs: list[dict], shots: int,
                   seed: int = FEWSHOT_SEED) -> list[_DocRequests]:
    rng = random.Random(seed)
    out = []
    for doc in docs:
        prefix = spec.description
        if shots:
            pool = [d for d in fewshot_docs if d is not doc]
            if len(pool) < shots:
                raise DataError(f"task {spec.name}: {shots} few-shot examples asked but only {len(pool)} documents "
                                "to draw them from")
            examples = [_solved(spec, d) for d in rng.sample(pool, shots)]
            prefix += spec.fewshot_delimiter.join(examples) + spec.fewshot_delimiter
        out.append(_doc_requests(spec, doc, prefix))
    return out


def _doc_requests(spec: TaskSpec, doc: dict, prefix: str) -> _DocRequests:
    if spec.kind == "loglikelihood":
        return _DocRequests([(prefix + str(spec.query(doc)), str(spec.continuation(doc)))], [], 0)
    if spec.contexts is not None:  # choices are contexts, the continuation is shared
        contexts = [str(c) for c in _as_list(spec.contexts(doc), spec)]
        continuation = spec.target_delimiter + str(spec.continuation(doc))
        return _DocRequests([(prefix + c, continuation) for c in contexts], [continuation.strip()] * len(contexts),
                            spec.gold_index(doc, contexts))
    query = prefix + str(spec.query(doc))
    choices = [str(c) for c in _as_list(spec.choices(doc), spec)]
    return _DocRequests([(query, spec.target_delimiter + c) for c in choices], choices, spec.gold_index(doc, choices))


def _solved(spec: TaskSpec, doc: dict) -> str:
    """A few-shot example: the document with its right answer."""
    if spec.kind == "loglikelihood":
        return str(spec.query(doc)) + str(spec.continuation(doc))
    if spec.contexts is not None:
        contexts = [str(c) for c in _as_list(spec.contexts(doc), spec)]
        return contexts[spec.gold_index(doc, contexts)] + spec.target_delimiter + str(spec.continuation(doc))
    choices = [str(c) for c in _as_list(spec.choices(doc), spec)]
    return str(spec.query(doc)) + spec.target_delimiter + choices[spec.gold_index(doc, choices)]


def _as_list(value, spec: TaskSpec) -> list:
    if not isinstance(value, (list, tuple)) or len(value) < 2:
        raise DataError(f"task {spec.name}: a document's choices must be a list of at least two, not {value!r}")
    return list(value)


def _choice_metrics(built: list[_DocRequests], per_doc: list[list]) -> dict[str, float]:
    hits: dict[str, list[float]] = {"acc": [], "acc_norm": [], "acc_bytes": []}
    for d, scored in zip(built, per_doc):
        lls = [s.logprob for s in scored]
        chars = [max(1, len(c)) for c in d.choices]
        nbytes = [max(1, len(c.encode("utf-8"))) for c in d.choices]
        hits["acc"].append(float(_argmax(lls) == d.gold))
        hits["acc_norm"].append(float(_argmax([ll / n for ll, n in zip(lls, chars)]) == d.gold))
        hits["acc_bytes"].append(float(_argmax([ll / n for ll, n in zip(lls, nbytes)]) == d.gold))
    metrics = {}
    for name, values in hits.items():
        metrics[name] = sum(values) / len(values)
        metrics[f"{name}_stderr"] = mean_stderr(values)
    return metrics


def _loglikelihood_metrics(per_doc: list[list]) -> dict[str, float]:
    lls = [s[0].logprob for s in per_doc]
    greedy = [float(s[0].is_greedy) for s in per_doc]
    mean_ll = sum(lls) / len(lls)
    return {"perplexity": math.exp(-mean_ll) if -mean_ll < 700 else math.inf, "acc": sum(greedy) / len(greedy),
            "acc_stderr": mean_stderr(greedy)}


def _rolling_result(spec: TaskSpec, scorer, docs: list[dict], keep_samples: int) -> TaskResult:
    texts = [str(spec.text(d)) for d in docs]
    counted = [str(spec.words_and_bytes_of(d)) for d in docs] if spec.words_and_bytes_of else texts
    lls = scorer.loglikelihood_rolling(texts)
    totals = LikelihoodTotals()
    for text, ll in zip(counted, lls):
        totals += LikelihoodTotals.of_document(text, ll, 0)
    samples = [{"text": t[:200], "loglikelihood": ll} for t, ll in zip(texts[:keep_samples], lls)]
    return TaskResult(spec.name, spec.kind, totals.metrics(), len(docs), 0, samples)


def mean_stderr(values: list[float]) -> float:
    """Standard error of a mean: sample standard deviation (n - 1) / sqrt(n); 0 for fewer than two values."""
    n = len(values)
    if n < 2:
        return 0.0
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


def _argmax(values: list[float]) -> int:
    return max(range(len(values)), key=lambda i: values[i])


def _sample(d: _DocRequests, scored: list) -> dict:
    lls = [s.logprob for s in scored]
    return {"context": d.requests[0][0][-300:], "continuations": [r[1] for r in d.requests], "gold": d.gold,
            "loglikelihoods": lls, "pick": _argmax(lls)}
