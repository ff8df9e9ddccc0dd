"""The task harness on hand-made tasks with known answers: request strings (templates, delimiters, few-shot),
acc / acc_norm / acc_bytes and their standard errors from planted log-likelihoods, the loglikelihood and
partial-scoring kinds, and task-file errors that say what is wrong."""

from __future__ import annotations

import json
import math
import statistics

import pytest

from slmkit.errors import DataError
from slmkit.eval.harness import build_requests, evaluate_task, mean_stderr
from slmkit.eval.loglikelihood import Scored
from slmkit.eval.task_data import read_documents
from slmkit.eval.task_spec import load_task_file


class PlantedScorer:
    """Log-likelihood of a request = the value planted for its continuation (greedy when planted so)."""

    def __init__(self, values: dict[str, float], greedy: set[str] = frozenset()):
        self.values, self.greedy, self.requests = values, greedy, []

    def loglikelihood(self, requests):
        self.requests.extend(requests)
        return [Scored(self.values[c], c in self.greedy, 1) for _, c in requests]


def write_task(tmp_path, yaml_text: str, docs: list[dict], name="task") -> object:
    (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (tmp_path / f"{name}.yaml").write_text(yaml_text.replace("DATA", f"{name}.jsonl"))
    spec = load_task_file(tmp_path / f"{name}.yaml")
    return spec, read_documents(spec.source)


PETS = [
    {"question": "Which pet barks?", "options": ["cat", "dog"], "answer": 1},
    {"question": "Which pet purrs?", "options": ["cat", "dog"], "answer": "cat"},
    {"question": "Which is longest?", "options": ["ox", "a very long snake"], "answer": 1},
]
PETS_YAML = 'name: pets\nkind: multiple_choice\ndata: DATA\nquery: "Q: {{question}}\\nA:"\nchoices: options\ngold: answer\n'


def test_requests_use_template_and_target_delimiter(tmp_path):
    spec, docs = write_task(tmp_path, PETS_YAML, PETS)
    built = build_requests(spec, docs, docs, 0)
    assert built[0].requests == [("Q: Which pet barks?\nA:", " cat"), ("Q: Which pet barks?\nA:", " dog")]
    assert [b.gold for b in built] == [1, 0, 1]  # an index, or the right choice's text


def test_fewshot_prompt_is_description_examples_and_query(tmp_path):
    spec, docs = write_task(tmp_path, PETS_YAML + 'description: "Pets.\\n"\n', PETS)
    built = build_requests(spec, docs, docs, 2, seed=3)
    context = built[0].requests[0][0]
    examples = context.removeprefix("Pets.\n").split("\n\n")
    assert context.startswith("Pets.\n") and examples[-1] == "Q: Which pet barks?\nA:"
    solved = {"Q: Which pet purrs?\nA: cat", "Q: Which is longest?\nA: a very long snake"}
    assert set(examples[:-1]) == solved  # two solved examples, never the document itself


def test_accuracy_metrics_from_planted_loglikelihoods(tmp_path):
    spec, docs = write_task(tmp_path, PETS_YAML, PETS)
    # doc 1: dog wins, gold dog; doc 2: dog wins by total and per character, gold cat;
    # doc 3: the long snake has the lower total but the higher per-character log-likelihood.
    planted = {" cat": -2.0, " dog": -1.0, " ox": -3.0, " a very long snake": -6.0}
    result = evaluate_task(spec, PlantedScorer(planted), docs)
    acc = [1.0, 0.0, 0.0]  # argmax: dog, dog, ox
    acc_norm = [1.0, 0.0, 1.0]  # per char: cat -2/3 dog -1/3 -> dog; dog again; ox -3/2 < snake -6/17
    assert result.metrics["acc"] == pytest.approx(sum(acc) / 3)
    assert result.metrics["acc_norm"] == pytest.approx(sum(acc_norm) / 3)
    assert result.metrics["acc_bytes"] == pytest.approx(sum(acc_norm) / 3)  # ASCII: bytes == characters
    assert result.metrics["acc_norm_stderr"] == pytest.approx(statistics.stdev(acc_norm) / math.sqrt(3))
    assert result.samples[2]["pick"] == 0 and result.samples[2]["gold"] == 1


def test_loglikelihood_kind_gives_perplexity_and_greedy_accuracy(tmp_path):
    docs = [{"text": "the cat sat on the mat"}, {"text": "a dog ran to the park"}]
    spec, docs = write_task(tmp_path, "name: lamb\nkind: loglikelihood\ndata: DATA\n"
                            "query: \"{{text.split(' ')[:-1]|join(' ')}}\"\ncontinuation: \"{{' ' + text.split(' ')[-1]}}\"\n",
                            docs)
    scorer = PlantedScorer({" mat": -1.0, " park": -3.0}, greedy={" mat"})
    result = evaluate_task(spec, scorer, docs)
    assert scorer.requests == [("the cat sat on the", " mat"), ("a dog ran to the", " park")]
    assert result.metrics["perplexity"] == pytest.approx(math.exp(2.0))
    assert result.metrics["acc"] == 0.5


def test_partial_scoring_puts_choices_in_the_context(tmp_path):
    docs = [{"sentence": "Sam gave Ann a gift because _ was kind.", "a": "Sam", "b": "Ann", "answer": 0}]
    spec, docs = write_task(tmp_path, "name: wino\nkind: multiple_choice\ndata: DATA\n"
                            "contexts: [\"{{sentence.split('_')[0]}}{{a}}\", \"{{sentence.split('_')[0]}}{{b}}\"]\n"
                            "continuation: \"{{sentence.split('_')[1].strip()}}\"\ngold: answer\n", docs)
    assert build_requests(spec, docs, docs, 0)[0].requests == [
        ("Sam gave Ann a gift because Sam", " was kind."), ("Sam gave Ann a gift because Ann", " was kind.")]


@pytest.mark.parametrize("yaml_text, problem", [
    ("name: x\nkind: multiple_choice\ndata: DATA\nchoises: options\n", "unknown task key(s) choises"),
    ("name: x\nkind: ranking\ndata: DATA\n", "kind 'ranking' is not one of"),
    ("name: x\nkind: multiple_choice\n", "missing 'data'"),
    ("name: x\nkind: multiple_choice\ndata: DATA\nquery: '{{qestion}}'\nchoices: options\ngold: answer\n",
     "'qestion' is undefined"),
    ("name: x\nkind: multiple_choice\ndata: DATA\nquery: question\nchoices: options\ngold: '{{\"horse\"}}'\n",
     "gold 'horse' is not one of the choices"),
    ("name: x\nkind: multiple_choice\ndata: DATA\nquery: question\nchoices: question\ngold: answer\n",
     "choices must be a list of at least two"),
])
def test_task_file_errors_say_what_is_wrong(tmp_path, yaml_text, problem):
    with pytest.raises(DataError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        spec, docs = write_task(tmp_path, yaml_text, PETS)
        evaluate_task(spec, PlantedScorer({" cat": 0.0, " dog": 0.0, " ox": 0.0, " a very long snake": 0.0}), docs)


def test_bad_data_files_are_named(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n{not json\n')
    with pytest.raises(DataError, match="bad.jsonl line 2: not valid JSON"):
        read_documents({"file": str(tmp_path / "bad.jsonl")})
    with pytest.raises(DataError, match="task data not found"):
        read_documents({"file": str(tmp_path / "missing.jsonl")})


def test_mean_stderr_is_the_sample_standard_error():
    values = [1.0, 0.0, 1.0, 1.0, 0.0]
    assert mean_stderr(values) == pytest.approx(statistics.stdev(values) / math.sqrt(len(values)))
    assert mean_stderr([1.0]) == 0.0
