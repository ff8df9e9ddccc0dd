"""Named suites: the tasks `slm eval --suite NAME` runs.

- `stories`: for TinyStories-style models — bits per byte on held-out stories (with the n-gram baselines),
  the project's generated multiple-choice tasks: story cloze, fact recall and the TinyStories paper's
  knowledge / reasoning / consistency probes (story_suite.py), the safety suite and the checkable story
  requests (generation_tasks.py; a base model scores near zero on the requests, a chat fine-tune should not).
- `safety`: the red-team and over-refusal prompts alone; `story-requests`: the checkable requests alone.
- `stories-judge`: story completions graded by a judge model (`--judge URL`), and with two or more models
  each later model's stories against the first's, judged pairwise.
- `standard`: HellaSwag, ARC-Easy, ARC-Challenge, PIQA, WinoGrande and LAMBADA as lm-eval defines them, on
  their validation splits (LAMBADA: test) so the suite runs from the offline copies (task_data.py); the
  single tasks (`--task arc_easy`) default to lm-eval's own splits.
"""

from __future__ import annotations

from slmkit.errors import DataError
from slmkit.eval.generation_tasks import STORIES_JUDGE
from slmkit.eval.safety import TASK as SAFETY
from slmkit.eval.story_requests import TASK as STORY_REQUESTS
from slmkit.eval.standard_tasks import standard_task
from slmkit.eval.story_suite import story_suite_tasks
from slmkit.eval.task_data import read_documents
from slmkit.eval.task_spec import TaskSpec

STANDARD_SUITE = ("hellaswag", "arc_easy", "arc_challenge", "piqa", "winogrande", "lambada_openai")
SUITES = {"stories": "bits per byte on held-out text, story cloze, fact recall, probes, safety, story requests",
          "standard": ", ".join(STANDARD_SUITE),
          "safety": "refusal, harmful-compliance and over-refusal rates by category",
          "story-requests": "checkable held-out instructions for chat models",
          "stories-judge": "story completions graded by a judge model (--judge URL)"}
SUITES_WITH_TEXT = {"stories"}  # suites that score held-out text
GENERATION_SUITES = {"stories": (SAFETY, STORY_REQUESTS), "safety": (SAFETY,),
                     "story-requests": (STORY_REQUESTS,), "stories-judge": (STORIES_JUDGE,)}


def suite_generation_tasks(names: list[str]) -> list[str]:
    """The generation tasks of the named suites, each once, in order."""
    for name in names:
        _check_suite(name)
    return list(dict.fromkeys(task for name in names for task in GENERATION_SUITES.get(name, ())))


def _check_suite(name: str) -> None:
    if name not in SUITES:
        raise DataError(f"unknown suite {name!r}: choose one of {', '.join(SUITES)}")


def suite_tasks(name: str, limit: int | None = None, seed: int = 0,
                data_dirs: list[str] | None = None) -> list[tuple[TaskSpec, list[dict]]]:
    """The likelihood (task, documents) pairs of suite `name`, each task cut to its first `limit` documents
    (suite_generation_tasks names the suite's generation tasks)."""
    if name == "stories":
        return [(spec, docs[:limit] if limit else docs) for spec, docs in story_suite_tasks(seed=seed)]
    if name == "standard":
        tasks = []
        for task in STANDARD_SUITE:
            spec = standard_task(task, None if task == "lambada_openai" else "validation")
            tasks.append((spec, read_documents(spec.source, data_dirs, limit)))
        return tasks
    _check_suite(name)
    return []
