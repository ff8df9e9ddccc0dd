"""LoglikelihoodScorer against lm-eval's `hf` model (transformers) on the same weights exported to HF format:
per-request log-likelihoods and greedy flags, rolling log-likelihoods, and whole tasks (lm-eval's own
HellaSwag definition on real HellaSwag data; a WikiText-style rolling task) through the harness and through
slmkit's lm-eval model."""

from __future__ import annotations

import json

import pytest
import torch
from lm_eval.models.huggingface import HFLM

from slmkit.errors import DataError
from slmkit.eval.harness import evaluate_task
from slmkit.eval.lm_eval_model import SlmkitLM
from slmkit.eval.loglikelihood import LoglikelihoodScorer
from slmkit.eval.standard_tasks import standard_task
from slmkit.eval.task_data import local_dataset_dirs, read_documents
from slmkit.eval.task_spec import load_task_file
from tests.eval.conftest import VOCAB
from tests.eval.lm_eval_reference import (
    OLMO_HELLASWAG, export_for_lm_eval, instances, run_lm_eval, tiny_scoring_model, write_hellaswag_yaml,
    write_rolling_yaml,
)

CONTEXT = "Once upon a time, there was a"
PAIRS = [
    (CONTEXT, " little girl named Lily."), (CONTEXT, " dog"), (CONTEXT, " big red ball that she loved."),  # shared
    ("Tom liked to ", "play with his ball."),  # trailing space moves into the continuation
    ("", "Lily was happy."),  # empty context: the prefix token
    ("One day, Sue went to the park with her mom and dad. They saw a big tree and", " sat under it."),
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, eval_data_dir):
    model = tiny_scoring_model(VOCAB)
    hf_dir = export_for_lm_eval(model, eval_data_dir / "tokenizer", tmp_path_factory.mktemp("lm-eval-model"))
    return model, hf_dir


def hflm(hf_dir, max_length):
    return HFLM(pretrained=str(hf_dir), batch_size=4, device="cpu", max_length=max_length, dtype="float32")


def with_greedy_continuation(model, tokenizer, pairs):
    """Add a request whose continuation is the model's own greedy next token, so is_greedy is True once."""
    ids = tokenizer.encode(CONTEXT)
    greedy = tokenizer.decode([int(model(torch.tensor([ids])).logits[0, -1].argmax())])
    assert tokenizer.encode(CONTEXT + greedy)[len(ids):] == [int(model(torch.tensor([ids])).logits[0, -1].argmax())]
    return pairs + [(CONTEXT, greedy)]


@pytest.mark.parametrize("max_length", [512, 20])  # 20: contexts are left-truncated as lm-eval does
def test_loglikelihood_matches_lm_eval_hf(exported, eval_tokenizer, max_length):
    model, hf_dir = exported
    pairs = with_greedy_continuation(model, eval_tokenizer, PAIRS)
    theirs = hflm(hf_dir, max_length).loglikelihood(instances("loglikelihood", pairs))
    for batch_size in (1, 32):
        ours = LoglikelihoodScorer(model, eval_tokenizer, max_length=max_length, batch_size=batch_size).loglikelihood(pairs)
        assert [s.is_greedy for s in ours] == [g for _, g in theirs]
        torch.testing.assert_close(torch.tensor([s.logprob for s in ours]), torch.tensor([ll for ll, _ in theirs]),
                                   rtol=1e-5, atol=1e-4)
    if max_length == 512:
        assert theirs[-1][1] and not theirs[0][1]  # the planted greedy request is greedy, the others not


def test_rolling_matches_lm_eval_hf(exported, eval_tokenizer, tinystories_valid):
    model, hf_dir = exported
    texts = tinystories_valid.read_text(encoding="utf-8").split("\n\n")[:5] + ["Hi."]
    theirs = hflm(hf_dir, 40).loglikelihood_rolling(instances("loglikelihood_rolling", [(t,) for t in texts]))
    ours = LoglikelihoodScorer(model, eval_tokenizer, max_length=40).loglikelihood_rolling(texts)
    assert max(len(eval_tokenizer.encode(t)) for t in texts) > 3 * 40  # several windows, a short last one
    torch.testing.assert_close(torch.tensor(ours, dtype=torch.float64), torch.tensor(theirs, dtype=torch.float64),
                               rtol=1e-5, atol=1e-3)


def test_hellaswag_matches_lm_eval_task_on_real_data(exported, eval_tokenizer, tmp_path):
    model, hf_dir = exported
    arrow = next(d / OLMO_HELLASWAG for d in local_dataset_dirs() if (d / OLMO_HELLASWAG).is_file())
    write_hellaswag_yaml(tmp_path / "tasks", arrow)
    theirs = run_lm_eval(hflm(hf_dir, 512), "hellaswag_local", tmp_path / "tasks", limit=24)
    spec = standard_task("hellaswag")
    ours = evaluate_task(spec, LoglikelihoodScorer(model, eval_tokenizer), read_documents(spec.source, limit=24))
    assert ours.documents == 24
    for metric in ("acc", "acc_norm"):
        assert ours.metrics[metric] == pytest.approx(theirs[metric], abs=1e-9)
    # slmkit's lm-eval model under lm-eval's own task definition gives the same numbers.
    through_lm_eval = run_lm_eval(SlmkitLM(model, eval_tokenizer), "hellaswag_local", tmp_path / "tasks", limit=24)
    for metric in ("acc", "acc_norm"):
        assert through_lm_eval[metric] == pytest.approx(theirs[metric], abs=1e-9)


def test_rolling_task_perplexities_match_lm_eval(exported, eval_tokenizer, tinystories_valid, tmp_path):
    model, hf_dir = exported
    docs = [{"text": t} for t in tinystories_valid.read_text(encoding="utf-8").split("\n\n")[:8]]
    data = tmp_path / "stories.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in docs))
    write_rolling_yaml(tmp_path / "tasks", data)
    theirs = run_lm_eval(hflm(hf_dir, 64), "stories_rolling", tmp_path / "tasks")
    (tmp_path / "ours.yaml").write_text("name: stories\nkind: rolling\ndata: stories.jsonl\n")
    ours = evaluate_task(load_task_file(tmp_path / "ours.yaml"), LoglikelihoodScorer(model, eval_tokenizer, 64),
                         docs).metrics
    via_slmkit_lm = run_lm_eval(SlmkitLM(model, eval_tokenizer, max_length=64), "stories_rolling", tmp_path / "tasks")
    for metric in ("word_perplexity", "byte_perplexity", "bits_per_byte"):
        assert ours[metric] == pytest.approx(theirs[metric], rel=1e-6)
        assert via_slmkit_lm[metric] == pytest.approx(theirs[metric], rel=1e-6)


def test_bad_requests_are_named(exported, eval_tokenizer):
    model, _ = exported
    scorer = LoglikelihoodScorer(model, eval_tokenizer, max_length=8)
    with pytest.raises(DataError, match="request 1: the continuation is empty"):
        scorer.score_tokens([([1], [2]), ([1], [])])
    with pytest.raises(DataError, match="request 0: the continuation has 9 tokens, more than the 8-token window"):
        scorer.score_tokens([([1], list(range(2, 11)))])


def test_many_choices_split_into_segments_equal_one_request_at_a_time(exported, eval_tokenizer):
    model, _ = exported
    scorer = LoglikelihoodScorer(model, eval_tokenizer, max_length=24, batch_size=2)
    choices = [" cat", " big dog", " red ball and a kite", " tree", " moon", " hat", " happy girl", " park",
               " small bird that sang", " cake", " boat", " sun"]
    pairs = [(CONTEXT, c) for c in choices]  # more choice tokens than two windows: several segments
    together = scorer.loglikelihood(pairs)
    alone = [scorer.loglikelihood([p])[0] for p in pairs]
    torch.testing.assert_close(torch.tensor([s.logprob for s in together]), torch.tensor([s.logprob for s in alone]),
                               rtol=1e-5, atol=1e-4)


def test_a_four_d_mask_needs_positions(exported):
    model, _ = exported
    ids = torch.zeros(1, 3, dtype=torch.int64)
    with pytest.raises(Exception, match="needs explicit positions"):
        model(ids, attention_mask=torch.ones(1, 1, 3, 3, dtype=torch.bool))
