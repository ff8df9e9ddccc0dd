"""Named suites: the tasks `slm eval --suite NAME` runs.

- `stories`: for TinyStories-style models — bits per byte on held-out stories (with the n-gram baselines)
  and the project's generated multiple-choice tasks: story cloze, fact recall and the TinyStories paper's
  knowledge / reasoning / consistency probes (story_suite.py).
- `standard`: HellaSwag, ARC-Easy, ARC-Challenge, PIQA, WinoGrande and LAMBADA as lm-eval defines them, on
  their validation splits (LAMBADA: test) so the suite runs from the offline copies (task_data.py); the
  single tasks (`--task arc_easy`) default to lm-eval's own splits.
"""

from __future__ import annotations

from slmkit.errors import DataError
from slmkit.eval.standard_tasks import standard_task
from slmkit.eval.story_suite import story_suite_tasks
from slmkit.eval.task_data import read_documents
from slmkit.eval.task_spec import TaskSpec

STANDARD_SUITE = ("hellaswag", "arc_easy", "arc_challenge", "piqa", "winogrande", "lambada_openai")
SUITES = {"stories": "bits per byte on held-out text, story cloze, fact recall, probes",
          "standard": ", ".join(STANDARD_SUITE)}
SUITES_WITH_TEXT = {"stories"}  # suites that score held-out text


def suite_tasks(name: str, limit: int | None = None, seed: int = 0,
                data_dirs: list[str] | None = None) -> list[tuple[TaskSpec, list[dict]]]:
    """The (task, documents) pairs of suite `name`, each task cut to its first `limit` documents."""
    if name == "stories":
        return [(spec, docs[:limit] if limit else docs) for spec, docs in story_suite_tasks(seed=seed)]
    if name == "standard":
        tasks = []
        for task in STANDARD_SUITE:
            spec = standard_task(task, None if task == "lambada_openai" else "validation")
            tasks.append((spec, read_documents(spec.source, data_dirs, limit)))
        return tasks
    raise DataError(f"unknown suite {name!r}: choose one of {', '.join(SUITES)}")
