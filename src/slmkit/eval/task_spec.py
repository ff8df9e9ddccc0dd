"""What an evaluation task is: where its documents come from and how a document becomes requests.

A task file is YAML beside its data (`slm eval MODEL --task path/to/task.yaml`):

    name: pets                     # shown in reports
    kind: multiple_choice          # multiple_choice | loglikelihood | rolling
    data: pets.jsonl               # JSONL (one document per line) or JSON list, relative to this file;
                                   # or a hub dataset: {hub: allenai/ai2_arc, name: ARC-Easy, split: test}
    fewshot_data: pets-train.jsonl # optional: where few-shot examples come from (default: `data`)
    query: "Question: {{question}}\\nAnswer:"     # the context; a jinja2 template over the document's fields
    choices: options               # a field holding a list, or a template rendering a list, or a list of templates
    gold: answer                   # a field or template: an index into choices, or the right choice's text
    num_fewshot: 0
    target_delimiter: " "          # between the query and a choice
    fewshot_delimiter: "\\n\\n"      # between few-shot examples
    description: ""                # text before everything

Every entry but `name`, `kind` and `data` has a default: `query`, `choices` and `gold` read the fields of
the same name, so documents written as {"query": ..., "choices": [...], "gold": 0} need no templates.
`kind: loglikelihood` scores one continuation (`continuation`, default field "continuation") after the
query: LAMBADA-style perplexity and accuracy (is the continuation the greedy one). `kind: rolling` scores
a whole text (`text`, default field "text"): word/byte perplexity and bits per byte. A multiple-choice task
whose choices are the contexts and whose continuation is shared (WinoGrande's "partial" scoring) gives
`contexts` (a list) and `continuation` instead of `query` and `choices`.
Scoring follows lm-eval (lm_eval/api/task.py): one request per choice, continuation = target_delimiter +
choice; acc = argmax of log-likelihoods, acc_norm = argmax of log-likelihood per character of the choice,
acc_bytes = per UTF-8 byte.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import yaml

from slmkit.errors import DataError

KINDS = ("multiple_choice", "loglikelihood", "rolling")
_KEYS = {"name", "kind", "data", "fewshot_data", "query", "choices", "gold", "contexts", "continuation", "text",
         "num_fewshot", "target_delimiter", "fewshot_delimiter", "description", "split", "fewshot_split"}
_JINJA = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)

Getter = Callable[[dict], object]


@dataclass
class TaskSpec:
    """A task as code: `source` says where documents come from (task_data.py reads it); the getters turn
    one document into its query, choices, gold index, contexts or text."""

    name: str
    kind: str
    source: dict  # {"file": path} or {"hub": id, "name": config, "split": split} or {"olmo": ...}
    query: Getter | None = None
    choices: Getter | None = None
    gold: Getter | None = None
    contexts: Getter | None = None
    continuation: Getter | None = None
    text: Getter | None = None
    fewshot_source: dict | None = None
    num_fewshot: int = 0
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    description: str = ""
    words_and_bytes_of: Getter | None = None  # rolling: the text whose words/bytes are counted (default: text)
    metrics: tuple[str, ...] = field(default=())

    def gold_index(self, doc: dict, choices: list[str]) -> int:
        """The right choice's index; a gold given as text is looked up among the choices."""
        gold = self.gold(doc)
        if isinstance(gold, str) and not gold.strip().lstrip("-").isdigit():
            if gold not in choices:
                raise DataError(f"task {self.name}: gold {gold!r} is not one of the choices {choices}")
            return choices.index(gold)
        index = int(gold)
        if not 0 <= index < len(choices):
            raise DataError(f"task {self.name}: gold index {index} is outside the {len(choices)} choices")
        return index


def getter(spec, default_field: str | None = None) -> Getter | None:
    """A function doc -> value from a task file's entry: a field name (dotted for nesting), a jinja2
    template ("{{...}}"; a rendered list literal becomes a list), or a list of either."""
    if spec is None:
        spec = default_field
    if spec is None:
        return None
    if isinstance(spec, list):
        parts = [getter(s) for s in spec]
        return lambda doc: [p(doc) for p in parts]
    if not isinstance(spec, str):
        raise DataError(f"a task entry must be a field name, a template or a list of them, not {spec!r}")
    if "{{" in spec or "{%" in spec:
        template = _JINJA.from_string(spec)
        return lambda doc: _literal(_render(template, doc, spec))
    return lambda doc: _field(doc, spec)


def _render(template, doc: dict, spec: str) -> str:
    try:
        return template.render(**doc)
    except jinja2.UndefinedError as e:
        raise DataError(f"template {spec!r}: {e.message} (document fields: {sorted(doc)[:10]})") from None


def _literal(text: str):
    stripped = text.strip()
    if stripped.startswith("[") and stripped.endswith("]"):
        try:
            return ast.literal_eval(stripped)
        except (ValueError, SyntaxError):
            return text
    return text


def _field(doc: dict, path: str):
    value = doc
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            raise DataError(f"document has no field {path!r} (fields: {sorted(doc)[:10]}); "
                            "name an existing field or write a {{template}}")
        value = value[part]
    return value


def load_task_file(path: str | os.PathLike) -> TaskSpec:
    """A TaskSpec from a task YAML (format in this module's docstring)."""
    path = Path(path)
    try:
        entries = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise DataError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    if not isinstance(entries, dict):
        raise DataError(f"{path}: a task file is a YAML mapping of name, kind, data, ...")
    unknown = sorted(set(entries) - _KEYS)
    if unknown:
        raise DataError(f"{path}: unknown task key(s) {', '.join(unknown)} (known: {', '.join(sorted(_KEYS))})")
    for key in ("name", "kind", "data"):
        if key not in entries:
            raise DataError(f"{path}: missing '{key}'")
    if entries["kind"] not in KINDS:
        raise DataError(f"{path}: kind {entries['kind']!r} is not one of {', '.join(KINDS)}")
    return _spec_from_entries(entries, path.parent)


def _spec_from_entries(e: dict, base: Path) -> TaskSpec:
    kind = e["kind"]
    partial = "contexts" in e
    spec = TaskSpec(
        name=str(e["name"]), kind=kind, source=_source(e["data"], base, e.get("split")),
        fewshot_source=_source(e["fewshot_data"], base, e.get("fewshot_split")) if "fewshot_data" in e else None,
        num_fewshot=int(e.get("num_fewshot", 0)), target_delimiter=str(e.get("target_delimiter", " ")),
        fewshot_delimiter=str(e.get("fewshot_delimiter", "\n\n")), description=str(e.get("description", "")))
    if kind == "rolling":
        spec.text = getter(e.get("text"), "text")
    elif kind == "loglikelihood":
        spec.query, spec.continuation = getter(e.get("query"), "query"), getter(e.get("continuation"), "continuation")
    elif partial:
        spec.contexts, spec.continuation = getter(e["contexts"]), getter(e.get("continuation"), "continuation")
        spec.gold = getter(e.get("gold"), "gold")
    else:
        spec.query, spec.choices = getter(e.get("query"), "query"), getter(e.get("choices"), "choices")
        spec.gold = getter(e.get("gold"), "gold")
    return spec


def _source(data, base: Path, split: str | None) -> dict:
    if isinstance(data, str):
        return {"file": str(base / data)}
    if isinstance(data, dict) and "hub" in data:
        return {"hub": str(data["hub"]), "name": data.get("name"), "split": data.get("split", split or "test")}
    raise DataError(f"task data must be a file name or {{hub: ID, name: CONFIG, split: SPLIT}}, not {data!r}")
