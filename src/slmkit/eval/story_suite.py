"""The bundled "stories" suite: multiple-choice tasks in TinyStories English whose answers are known by
construction, for models of a few million parameters trained on synthetic or real TinyStories text.

    for spec, docs in story_suite_tasks(seed=0, per_task=200):
        result = evaluate_task(spec, scorer, docs)       # result.metrics["acc"], ["acc_norm"]
    by_kind = evaluate_by_kind(spec, scorer, docs)       # {"knowledge": TaskResult, "reasoning": ...}

Three subtasks, each document {"query", "choices", "gold", "subtask", "kind", "template"} (scored as
lm-eval scores multiple choice: one request per choice, continuation " " + choice):

- `story_cloze` (story_suite_cloze.py): a 3-4 sentence story and four last sentences, one consistent
  with it (right name, toy, pronoun, place, feeling after the event); kind "consistency".
- `fact_recall` (story_suite_recall.py): a fact stated once, one or two sentences, then the sentence
  whose next word is that fact (a toy's colour, the owner, the place, a pet's name, ...); kind "recall".
- `probes` (story_suite_probes.py): the TinyStories paper's probes; kind knowledge, reasoning or
  consistency.

Chance is 1/4 on the first two and about 0.26 on the probes (two have 2 choices). The same seed gives
the same documents (each subtask draws from its own random.Random, never the global one); within a
subtask no query repeats.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import partial

from slmkit.errors import ConfigError, DataError
from slmkit.eval.harness import TaskResult, evaluate_task
from slmkit.eval.story_suite_cloze import FRAMES, cloze_document
from slmkit.eval.story_suite_probes import PROBES, probe_document
from slmkit.eval.story_suite_recall import TEMPLATES, recall_document
from slmkit.eval.task_spec import TaskSpec, getter

SUBTASKS = ("story_cloze", "fact_recall", "probes")
# How many draws of one template before deciding it has no new query left.
_ATTEMPTS_PER_DOCUMENT = 50


def _makers(subtask: str) -> list[Callable[[random.Random], dict]]:
    """One document maker per template of `subtask`, used in turn."""
    if subtask == "story_cloze":
        return [partial(cloze_document, frame_name=frame) for frame in FRAMES]
    if subtask == "fact_recall":
        return [partial(recall_document, template=template) for template in TEMPLATES]
    return [partial(probe_document, probe=probe) for probe in PROBES]


def _subtask_documents(subtask: str, seed: int, count: int) -> list[dict]:
    """`count` documents of `subtask`, the templates taking turns, no query twice. A template that keeps
    repeating itself (it has few variations) drops out of the rotation."""
    rng = random.Random(f"slmkit-stories/{subtask}/{seed}")
    makers = _makers(subtask)
    rng.shuffle(makers)  # which templates get the leftover documents when count is not a multiple
    docs: list[dict] = []
    seen: set[str] = set()
    while len(docs) < count:
        if not makers:
            raise ConfigError(f"the stories suite has only {len(docs)} distinct {subtask} documents: "
                              f"ask for at most that many per task, not {count}")
        maker = makers[len(docs) % len(makers)]
        for _ in range(_ATTEMPTS_PER_DOCUMENT):
            doc = maker(rng)
            if doc["query"] not in seen:
                seen.add(doc["query"])
                docs.append(doc)
                break
        else:
            makers.remove(maker)
    return docs


def story_suite_documents(seed: int = 0, per_task: int = 200) -> dict[str, list[dict]]:
    """{subtask: `per_task` documents} for each of SUBTASKS, the same for the same `seed`."""
    if isinstance(per_task, bool) or not isinstance(per_task, int) or per_task < 1:
        raise ConfigError(f"per_task must be a positive integer (documents per subtask), got {per_task!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an integer, got {seed!r}")
    return {subtask: _subtask_documents(subtask, seed, per_task) for subtask in SUBTASKS}


def story_task_spec(subtask: str, seed: int = 0) -> TaskSpec:
    """The TaskSpec of one subtask: multiple choice over the documents' own query/choices/gold."""
    if subtask not in SUBTASKS:
        raise ConfigError(f"unknown stories subtask {subtask!r}; choose one of {', '.join(SUBTASKS)}")
    return TaskSpec(subtask, "multiple_choice", {"file": "<generated>", "generator": "stories", "seed": seed},
                    query=getter(None, "query"), choices=getter(None, "choices"), gold=getter(None, "gold"))


def story_suite_tasks(seed: int = 0, per_task: int = 200) -> list[tuple[TaskSpec, list[dict]]]:
    """(spec, documents) for each subtask, ready for `evaluate_task(spec, scorer, documents)`."""
    documents = story_suite_documents(seed, per_task)
    return [(story_task_spec(subtask, seed), documents[subtask]) for subtask in SUBTASKS]


def evaluate_by_kind(spec: TaskSpec, scorer, docs: list[dict], field: str = "kind") -> dict[str, TaskResult]:
    """One TaskResult per value of the documents' `field` ("kind", or "template" for a finer split),
    each over its own documents; together they score every document once."""
    groups: dict[str, list[dict]] = {}
    for doc in docs:
        if field not in doc:
            raise DataError(f"task {spec.name}: a document has no field {field!r} to break the results down by")
        groups.setdefault(str(doc[field]), []).append(doc)
    return {value: evaluate_task(spec, scorer, group) for value, group in groups.items()}
