"""The stories suite: deterministic documents of the promised shape, answers that an oracle reading the story
always finds, gold positions that are uniform, and surface statistics that do not find them: a Kneser-Ney
trigram trained on the synthetic stories stays at chance on fact recall and the cloze while it does know
the knowledge probes' word associations (so its chance scores are the tasks' doing, not a broken scorer),
and counting shared words does not solve the cloze."""

import random
import re

import numpy as np
import pytest

from slmkit.data.sources import generate_stories
from slmkit.errors import ConfigError, DataError
from slmkit.eval import document_stream
from slmkit.eval.harness import evaluate_task
from slmkit.eval.loglikelihood import Scored
from slmkit.eval.ngram import KneserNeyModel
from slmkit.eval.story_suite import (
    SUBTASKS, evaluate_by_kind, story_suite_documents, story_suite_tasks, story_task_spec,
)
from slmkit.eval.story_suite_probes import PROBES
from slmkit.eval.story_suite_words import FEELINGS, mentions
from slmkit.tokenizer import train_bpe_from_texts

PER_TASK = 200
KINDS = {"story_cloze": {"consistency"}, "fact_recall": {"recall"},
         "probes": {"knowledge", "reasoning", "consistency"}}
# chi-square with 3 degrees of freedom exceeds this with probability 0.001 under a uniform gold position
CHI2_3DF_P001 = 16.27
PRONOUN_FORMS = {"she": ("she", "her"), "he": ("he", "his", "him")}


@pytest.fixture(scope="module")
def suite():
    return story_suite_documents(seed=0, per_task=PER_TASK)


def test_same_seed_same_documents_and_no_global_random_state(suite):
    random.seed(123)
    state = random.getstate()
    again = story_suite_documents(seed=0, per_task=PER_TASK)
    assert random.getstate() == state  # the global generator is neither read nor advanced
    random.seed(456)
    assert again == suite == story_suite_documents(seed=0, per_task=PER_TASK)
    other = story_suite_documents(seed=1, per_task=PER_TASK)
    for subtask in SUBTASKS:
        assert other[subtask] != suite[subtask]
        assert len({d["query"] for d in other[subtask]} & {d["query"] for d in suite[subtask]}) < PER_TASK // 2
    # asking for fewer documents gives the first ones of the longer list
    fewer = story_suite_documents(seed=0, per_task=30)
    assert all(fewer[s] == suite[s][:30] for s in SUBTASKS)


def test_sizes_fields_and_unique_choices(suite):
    assert set(suite) == set(SUBTASKS)
    for subtask, docs in suite.items():
        assert len(docs) == PER_TASK
        assert len({d["query"] for d in docs}) == PER_TASK
        for doc in docs:
            assert doc["subtask"] == subtask and doc["kind"] in KINDS[subtask] and doc["template"]
            choices = doc["choices"]
            assert len(choices) == (4 if subtask != "probes" else len(choices)) and len(choices) >= 2
            assert len(set(choices)) == len(choices), doc
            assert isinstance(doc["gold"], int) and 0 <= doc["gold"] < len(choices)
            assert "{" not in doc["query"] + "".join(choices), doc  # every template slot was filled
            assert all(c == c.strip() and c for c in choices)  # the harness adds the " " delimiter
    assert {d["kind"] for d in suite["probes"]} == KINDS["probes"]


def test_every_template_is_used_evenly(suite):
    for subtask, docs in suite.items():
        counts = {}
        for doc in docs:
            counts[doc["template"]] = counts.get(doc["template"], 0) + 1
        assert max(counts.values()) - min(counts.values()) <= 1, (subtask, counts)
    assert {d["template"] for d in suite["probes"]} == {p.name for p in PROBES} and len(PROBES) >= 36


@pytest.mark.parametrize("seed", [0, 1])
def test_gold_positions_are_uniform(seed):
    docs = story_suite_documents(seed=seed, per_task=PER_TASK)
    for subtask in SUBTASKS:
        four = [d["gold"] for d in docs[subtask] if len(d["choices"]) == 4]
        observed = np.bincount(four, minlength=4)
        expected = len(four) / 4
        chi2 = float(((observed - expected) ** 2 / expected).sum())
        assert chi2 < CHI2_3DF_P001, (subtask, observed.tolist())
    two = [d["gold"] for d in docs["probes"] if len(d["choices"]) == 2]
    assert 0.2 < sum(two) / len(two) < 0.8


def _split_last_sentence(query: str) -> tuple[str, str]:
    cut = query.rindex(". ") + 1
    return query[:cut], query[cut:]


def test_fact_recall_oracle_reads_the_story(suite):
    """The right answer is the one choice the story states; the sentence with the blank names none."""
    for doc in suite["fact_recall"]:
        story, last = _split_last_sentence(doc["query"])
        stated = [i for i, choice in enumerate(doc["choices"]) if mentions(story, choice)]
        assert stated == [doc["gold"]], doc
        assert not any(mentions(last, choice) for choice in doc["choices"]), doc


def _cloze_oracle(doc: dict) -> int:
    """The choice that states every fact of the story and none of its contradictions."""
    facts = [v for k, v in doc["facts"].items() if k != "valence"]
    fits = [i for i, choice in enumerate(doc["choices"])
            if all(mentions(choice, f) for f in facts)
            and not any(mentions(choice, w) for w in doc["contradictions"].values())]
    assert len(fits) == 1, doc
    return fits[0]


def test_story_cloze_oracle_and_facts_grounded_in_the_story(suite):
    for doc in suite["story_cloze"]:
        story, choices = doc["query"], doc["choices"]
        assert _cloze_oracle(doc) == doc["gold"]
        assert 3 <= story.count(". ") + 1 <= 5
        for kind, right in doc["facts"].items():
            wrong = doc["contradictions"].get(kind)
            if kind in ("name", "object", "place"):
                assert mentions(story, right)
                # a wrong value the story mentions is mentioned as often as the right one
                wrong_count = len(re.findall(rf"\b{wrong}\b", story))
                assert wrong_count in (0, len(re.findall(rf"\b{right}\b", story))), doc
            elif kind == "pronoun":
                assert all(mentions(story, w) for w in PRONOUN_FORMS[right][:1])
                assert not any(mentions(story, w) for w in PRONOUN_FORMS[wrong]), doc
            elif kind == "feeling":
                valence = doc["facts"]["valence"]
                assert right in FEELINGS[valence] and wrong not in FEELINGS[valence]
        # 2 x 2 design: each slot's value is in exactly two endings, and the endings have one shape
        for word in [*doc["contradictions"].values(), *(v for k, v in doc["facts"].items() if k != "valence")]:
            assert sum(mentions(c, word) for c in choices) == 2, (word, doc)
        lengths = [len(c) for c in choices]
        assert max(lengths) - min(lengths) <= 14 and len({len(c.split()) for c in choices}) <= 2


def test_every_distractor_is_elsewhere_a_right_answer():
    docs = story_suite_documents(seed=0, per_task=1200)
    for template in {d["template"] for d in docs["fact_recall"]}:
        group = [d for d in docs["fact_recall"] if d["template"] == template]
        golds = {d["choices"][d["gold"]] for d in group}
        wrong = {c for d in group for i, c in enumerate(d["choices"]) if i != d["gold"]}
        assert wrong <= golds, (template, wrong - golds)
    for kind in ("name", "object", "place", "pronoun", "feeling"):
        rights = {d["facts"][kind] for d in docs["story_cloze"] if kind in d["facts"]}
        wrongs = {d["contradictions"][kind] for d in docs["story_cloze"] if kind in d["contradictions"]}
        assert wrongs <= rights, (kind, wrongs - rights)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower()))


def test_counting_shared_words_does_not_solve_the_cloze(suite):
    """Pick the ending sharing most words with the story (ties split evenly): measured 0.395 at seed 0 (chance
    0.25); chance on the frames whose wrong values are the story's own other characters, toys and places
    (every ending then shares the same words but for two-word toys like "teddy bear")."""
    scores = {}
    for doc in suite["story_cloze"]:
        story = _words(doc["query"])
        shared = [len(_words(c) & story) for c in doc["choices"]]
        tied = [i for i, s in enumerate(shared) if s == max(shared)]
        scores.setdefault(doc["template"], []).append((doc["gold"] in tied) / len(tied))
    overall = sum(sum(s) for s in scores.values()) / PER_TASK
    assert overall < 0.45
    for balanced in ("lost_toy", "two_places"):
        assert sum(scores[balanced]) / len(scores[balanced]) < 0.35, balanced


class NgramScorer:
    """A log-likelihood scorer over a Kneser-Ney model, tokenizing as lm-eval does: context + continuation
    encoded whole, the continuation being the tokens after the context's own."""

    def __init__(self, model: KneserNeyModel, tokenizer):
        self.model, self.tokenizer = model, tokenizer

    def loglikelihood(self, requests):
        out = []
        for context, continuation in requests:
            context_ids = self.tokenizer.encode(context)
            whole = self.tokenizer.encode(context + continuation)
            targets = len(whole) - len(context_ids)
            stream = whole[max(0, len(context_ids) - (self.model.order - 1)):]  # all the n-gram can see
            probs = self.model.target_probabilities(stream)[-targets:]
            out.append(Scored(float(np.log(probs).sum()), False, targets))
        return out


@pytest.fixture(scope="module")
def trigram_scorer():
    texts = list(generate_stories(2000, seed=1))
    tokenizer = train_bpe_from_texts(texts, 512)
    model = KneserNeyModel.train(document_stream(tokenizer, texts), tokenizer.vocab_size, order=3)
    return NgramScorer(model, tokenizer)


def test_trigram_stays_at_chance_on_recall_and_cloze(trigram_scorer):
    """Measured at seed 0 (seeds 0-9 in brackets), acc / acc_norm: fact_recall 0.29 / 0.29 (0.20-0.29 /
    0.21-0.29), story_cloze 0.245 / 0.29 (0.225-0.29 / 0.185-0.315), probes 0.455 / 0.345 (0.42-0.485):
    knowledge 0.65, reasoning 0.32, consistency 0.38."""
    results = {spec.name: evaluate_task(spec, trigram_scorer, docs) for spec, docs in story_suite_tasks(0, PER_TASK)}
    for name, bound in (("fact_recall", 0.45), ("story_cloze", 0.35)):
        metrics = results[name].metrics
        assert metrics["acc"] < bound and metrics["acc_norm"] < bound, (name, metrics)
    assert results["probes"].metrics["acc"] < 0.6
    # the control: the same scorer does know which word goes with "night sky" or "tired ... went"
    spec, probes = story_suite_tasks(0, PER_TASK)[2]
    by_kind = evaluate_by_kind(spec, trigram_scorer, probes)
    assert by_kind["knowledge"].metrics["acc"] > 0.5
    assert sum(r.documents for r in by_kind.values()) == PER_TASK


class GoldScorer:
    """Log-likelihood 0 for the right continuation of each context, -10 for the others."""

    def __init__(self, docs):
        self.right = {(d["query"], " " + d["choices"][d["gold"]]) for d in docs}

    def loglikelihood(self, requests):
        return [Scored(0.0 if r in self.right else -10.0, True, 1) for r in requests]


def test_tasks_run_through_the_harness():
    tasks = story_suite_tasks(seed=3, per_task=20)
    assert [spec.name for spec, _ in tasks] == list(SUBTASKS)
    for spec, docs in tasks:
        assert spec.kind == "multiple_choice" and len(docs) == 20
        result = evaluate_task(spec, GoldScorer(docs), docs)
        assert result.metrics["acc"] == result.metrics["acc_norm"] == 1.0
        by_template = evaluate_by_kind(spec, GoldScorer(docs), docs, field="template")
        assert sum(r.documents for r in by_template.values()) == 20


def test_bad_arguments_are_typed_errors():
    for per_task in (0, -1, 2.5, True):
        with pytest.raises(ConfigError, match="per_task"):
            story_suite_documents(per_task=per_task)
    with pytest.raises(ConfigError, match="seed"):
        story_suite_documents(seed="0")
    with pytest.raises(ConfigError, match="unknown stories subtask"):
        story_task_spec("hellaswag")
    with pytest.raises(DataError, match="no field"):
        evaluate_by_kind(story_task_spec("probes"), GoldScorer([]), [{"query": "q", "choices": ["a", "b"], "gold": 0}])
