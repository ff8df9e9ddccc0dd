"""One evaluation over models, tasks, held-out text and baselines; CI gates; the report directory."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from slmkit.errors import DataError
from slmkit.eval.evaluation_run import ModelToEvaluate, check_gates, parse_gates, run_evaluation
from slmkit.eval.loglikelihood import LoglikelihoodScorer
from slmkit.eval.report import write_report
from slmkit.eval.text_eval import (
    baseline_text_metrics, documents_from_data_dir, documents_from_file, training_stream,
)
from tests.eval.test_harness import PETS, PETS_YAML, write_task


@pytest.fixture(scope="module")
def evaluated(random_model, eval_tokenizer, eval_data_dir, tmp_path_factory):
    spec, docs = write_task(tmp_path_factory.mktemp("task"), PETS_YAML, PETS)
    text = documents_from_data_dir(eval_data_dir, eval_tokenizer, "val", limit=20)
    train_ids = training_stream(eval_data_dir, eval_tokenizer)
    models = [ModelToEvaluate("random", random_model, eval_tokenizer, "mem://random"),
              ModelToEvaluate("random-again", random_model, eval_tokenizer, "mem://random")]
    return run_evaluation(models, [(spec, docs)], text, train_ids, progress=False), text, train_ids


def test_every_model_gets_every_task_and_the_baselines(evaluated, random_model, eval_tokenizer):
    results, text, _ = evaluated
    assert set(results.results) == {"random", "random-again"}
    assert results.results["random"] == results.results["random-again"]
    assert set(results.results["random"]) == {"text", "pets"}
    expected = LoglikelihoodScorer(random_model, eval_tokenizer).rolling_totals(text).bits_per_byte
    assert results.results["random"]["text"]["bits_per_byte"] == pytest.approx(expected)
    assert results.baselines["chance"]["pets"]["acc"] == 0.5  # two choices each
    assert set(results.baselines) == {"chance", "unigram", "kneser-ney-3"}
    chance_bpb = results.baselines["chance"]["text"]["bits_per_byte"]
    tokens = sum(len(ids) for ids in eval_tokenizer.encode_batch(text))
    nbytes = sum(len(t.encode("utf-8")) for t in text)
    assert chance_bpb == pytest.approx(tokens * math.log(eval_tokenizer.vocab_size) / nbytes / math.log(2))
    kn = results.baselines["kneser-ney-3"]["text"]["bits_per_byte"]
    assert kn < results.baselines["unigram"]["text"]["bits_per_byte"] < chance_bpb


def test_unigram_baseline_is_add_one_counts_of_the_training_stream(eval_tokenizer, evaluated):
    _, text, train_ids = evaluated
    counts = np.bincount(np.asarray(train_ids), minlength=eval_tokenizer.vocab_size)
    p = (counts + 1) / (counts.sum() + eval_tokenizer.vocab_size)
    ll = sum(np.log(p[ids]).sum() for ids in eval_tokenizer.encode_batch(text))
    nbytes = sum(len(t.encode("utf-8")) for t in text)
    got = baseline_text_metrics(eval_tokenizer, text, train_ids)["unigram"]["bits_per_byte"]
    assert got == pytest.approx(-ll / nbytes / math.log(2))


def test_gates_pass_fail_and_catch_typos(evaluated):
    results, _, _ = evaluated
    acc = results.results["random"]["pets"]["acc"]
    assert check_gates(results, parse_gates([f"acc={acc}"], "below")) == []
    failed = check_gates(results, parse_gates([f"pets.acc={acc + 0.01}"], "below"))
    assert len(failed) == 2 and "random pets acc" in failed[0]
    assert check_gates(results, parse_gates(["text.bits_per_byte=0.01"], "above"))
    assert check_gates(results, parse_gates(["acc_nrom=0.1"], "below")) == [
        "no task reports acc_nrom (gate below 0.1)"]
    with pytest.raises(DataError, match="write METRIC=VALUE"):
        parse_gates(["acc"], "below")


def test_report_directory(evaluated, tmp_path):
    results, _, _ = evaluated
    out = tmp_path / "report"
    out.mkdir()
    (out / "stale.txt").write_text("from an earlier run")
    write_report(results, out)
    assert sorted(p.name for p in out.iterdir()) == ["accuracy.png", "bits_per_byte.png", "report.html",
                                                      "report.md", "results.json"]
    saved = json.loads((out / "results.json").read_text())
    assert saved["results"]["random"]["pets"]["acc"] == results.results["random"]["pets"]["acc"]
    md = (out / "report.md").read_text()
    assert "## pets (multiple_choice, 3 documents)" in md and "| *kneser-ney-3* |" in md
    assert (out / "bits_per_byte.png").read_bytes()[:4] == b"\x89PNG"
    assert "<table>" in (out / "report.html").read_text()


def test_text_files_split_into_documents(tmp_path):
    (tmp_path / "a.txt").write_text("One story.<|endoftext|>\nTwo story.\n\nStill two.<|endoftext|>")
    assert documents_from_file(tmp_path / "a.txt") == ["One story.", "Two story.\n\nStill two."]
    (tmp_path / "b.txt").write_text("One.\n\nTwo.\n")
    assert documents_from_file(tmp_path / "b.txt") == ["One.", "Two."]
    with pytest.raises(DataError, match="unknown delimiter"):
        documents_from_file(tmp_path / "b.txt", "paragraph")
