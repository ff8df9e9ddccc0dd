"""N-gram baselines: proper distributions for every order, a Kneser-Ney probability worked out by hand, the
unigram's analytic value, bits per byte recomputed independently, and the expected ranking on real
TinyStories text with the GPT-2 tokenizer."""

import math
from fractions import Fraction

import numpy as np
import pytest

from slmkit.errors import ConfigError, DataError
from slmkit.eval import document_stream, token_byte_lengths
from slmkit.eval.ngram import (
    FALLBACK_DISCOUNT, KneserNeyModel, UnigramModel, ngram_baselines, score_uniform,
)
from slmkit.tokenizer import load_tokenizer
from tests.conftest import shared_path

# Worked example, vocabulary 0..5 (1 and 5 never occur). 17 tokens, 16 bigrams.
HAND_STREAM = [3, 0, 0, 3, 0, 0, 3, 3, 0, 3, 4, 3, 4, 2, 2, 0, 3]


@pytest.fixture(scope="session")
def gpt2():
    return load_tokenizer(shared_path("gpt2-tokenizer"))


@pytest.fixture(scope="session")
def tinystories_streams(gpt2, tinystories_train, tinystories_valid):
    """(train ids, validation ids, validation documents): the whole 2 MiB training piece (stories split at
    end-of-text) and the first 300 validation paragraphs, each a GPT-2 `document_stream`."""
    train_docs = [d.strip() for d in tinystories_train.read_text(encoding="utf-8").split("<|endoftext|>")]
    valid_docs = [d.strip() for d in tinystories_valid.read_text(encoding="utf-8").split("\n\n")][:300]
    train_docs, valid_docs = [d for d in train_docs if d], [d for d in valid_docs if d]
    return document_stream(gpt2, train_docs), document_stream(gpt2, valid_docs), valid_docs


@pytest.fixture(scope="session")
def tinystories_models(gpt2, tinystories_streams):
    train_ids = tinystories_streams[0]
    return {order: KneserNeyModel.train(train_ids, gpt2.vocab_size, order) for order in range(1, 6)}


def test_kneser_ney_bigram_by_hand():
    model = KneserNeyModel.train(HAND_STREAM, vocab_size=6, order=2)
    F = Fraction
    # Unigram level, continuation counts (distinct left neighbours; the stream's start counts for the
    # opening 3): 0 <- {0, 2, 3}: 3; 2 <- {2, 4}: 2; 3 <- {start, 0, 3, 4}: 4; 4 <- {3}: 1; total 10.
    # Count-of-counts n1..n4 = 1, 1, 1, 1: Y = 1/3, D1 = 1 - 2Y = 1/3, D2 = 2 - 3Y = 1, D3+ = 3 - 4Y = 5/3.
    d1, d2, d3 = F(1, 3), F(1), F(5, 3)
    removed = d1 + d2 + 2 * d3  # one count 1 (id 4), one 2 (id 2), two >= 3 (ids 0, 3)
    assert removed == F(14, 3)

    def unigram(c):
        discount = {0: 0, 1: d1, 2: d2}.get(c, d3)
        return (max(c - discount, 0) + removed * F(1, 6)) / 10

    p1 = {0: unigram(3), 1: unigram(0), 2: unigram(2), 3: unigram(4), 4: unigram(1), 5: unigram(0)}
    assert p1[3] == F(14, 45) and p1[1] == F(7, 90) and sum(p1.values()) == 1
    # Bigram level, raw counts: (0,0)=2 (0,3)=4 (2,0)=1 (2,2)=1 (3,0)=3 (3,3)=1 (3,4)=2 (4,2)=1 (4,3)=1.
    # n1..n4 = 5, 2, 1, 1: Y = 5/9, D1 = 1 - 2Y*2/5 = 5/9, D2 = 2 - 3Y/2 = 7/6, D3+ = 3 - 4Y = 7/9.
    b1, b2, b3 = F(5, 9), F(7, 6), F(7, 9)
    assert np.ravel(model.discounts).tolist() == pytest.approx([float(d) for d in (d1, d2, d3, b1, b2, b3)])
    # Context 3 occurs 7 times but the last is never followed: c(3) = 6, followers 0 (3), 3 (1), 4 (2).
    removed_3 = b3 + b1 + b2
    p_given_3 = {w: (max(c - {1: b1, 2: b2}.get(c, b3 if c else 0), 0) + removed_3 * p1[w]) / 6
                 for w, c in {0: 3, 1: 0, 2: 0, 3: 1, 4: 2, 5: 0}.items()}
    assert p_given_3[0] == F(11, 24) and p_given_3[2] == F(2, 27) and p_given_3[1] == F(7, 216)
    assert model.probabilities([3]) == pytest.approx([float(p_given_3[w]) for w in range(6)], rel=1e-12)
    # Context 2: followers 0 (1) and 2 (1), c(2) = 2.
    assert model.probabilities([4, 2])[0] == pytest.approx(float((1 - b1 + 2 * b1 * p1[0]) / 2), rel=1e-12)
    # An unseen context (1 never occurs) leaves the unigram level; the empty context is the unigram level.
    expected_unigram = [float(p1[w]) for w in range(6)]
    assert model.probabilities([1]) == pytest.approx(expected_unigram, rel=1e-12)
    assert model.probabilities([]) == pytest.approx(expected_unigram, rel=1e-12)


def test_discounts_fall_back_when_count_of_counts_are_zero():
    # bigrams (0,1)=2 (1,0)=1: n1 = n2 = 1 give D1 = 1 - 2 * (1/3) = 1/3; n3 = n4 = 0 leave D2, D3+ undefined
    model = KneserNeyModel.train([0, 1, 0, 1], vocab_size=3, order=2)
    assert model.discounts[1] == pytest.approx((1 / 3, FALLBACK_DISCOUNT, FALLBACK_DISCOUNT))
    assert model.probabilities([0]).sum() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("order", [1, 2, 3, 4, 5])
def test_probabilities_are_a_distribution_on_a_small_stream(order):
    rng = np.random.default_rng(order)
    stream = rng.integers(0, 5, 300)  # ids 5, 6 never seen
    model = KneserNeyModel.train(stream, vocab_size=7, order=order)
    for trial in range(100):
        if trial % 2:
            start = int(rng.integers(0, 290))
            context = stream[start:start + int(rng.integers(0, 7))]  # seen
        else:
            context = rng.integers(0, 7, int(rng.integers(0, 7)))  # mostly unseen
        probs = model.probabilities(context)
        assert probs.shape == (7,) and (probs > 0).all()
        assert probs.sum() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("order", [1, 2, 3, 4, 5])
def test_score_matches_probabilities_of_each_context(order):
    """The vectorised scorer equals asking `probabilities` for each target's last order-1 ids, stream start
    (shorter contexts) included."""
    rng = np.random.default_rng(10 + order)
    model = KneserNeyModel.train(rng.integers(0, 6, 400), vocab_size=8, order=order)
    stream = np.concatenate([rng.integers(0, 6, 50), rng.integers(0, 8, 30)])
    expected = [model.probabilities(stream[max(0, i - order + 1):i])[stream[i]] for i in range(1, len(stream))]
    assert model.target_probabilities(stream) == pytest.approx(expected, rel=1e-12)
    totals = model.score(stream)
    assert totals.tokens == len(stream) - 1 and totals.bytes == 0
    assert totals.nats == pytest.approx(-np.log(expected).sum(), rel=1e-12)


@pytest.mark.parametrize("order", [1, 2, 3, 4, 5])
def test_probabilities_are_a_distribution_on_tinystories(order, tinystories_models, tinystories_streams):
    model, valid = tinystories_models[order], tinystories_streams[1]
    rng = np.random.default_rng(order)
    for trial in range(20):
        start = int(rng.integers(0, len(valid) - 8))
        context = valid[start:start + 4] if trial % 2 else rng.integers(0, model.vocab_size, 4)
        probs = model.probabilities(context)
        assert probs.shape == (50257,) and probs.min() > 0
        assert probs.sum() == pytest.approx(1.0, abs=1e-9)


def test_unigram_equals_its_analytic_value():
    model = UnigramModel.train([0, 0, 1, 2, 0], vocab_size=4)  # counts 3, 1, 1, 0 over 5 tokens
    assert model.probabilities() == pytest.approx([4 / 9, 2 / 9, 2 / 9, 1 / 9])
    totals = model.score([1, 0, 3, 0], byte_lengths=[1, 2, 3, 0])  # targets 0, 3, 0
    assert (totals.tokens, totals.bytes) == (3, 1 + 0 + 1)
    assert totals.nats == pytest.approx(-2 * math.log(4 / 9) - math.log(1 / 9))
    assert totals.bits_per_byte == pytest.approx(totals.nats / math.log(2) / 2)


def test_uniform_is_log_vocab_per_target():
    totals = score_uniform([5, 1, 2, 3], vocab_size=10, byte_lengths=np.full(10, 2))
    assert (totals.tokens, totals.bytes) == (3, 6)
    assert totals.loss == pytest.approx(math.log(10))
    assert totals.bits_per_byte == pytest.approx(3 * math.log2(10) / 6)


def test_bits_per_byte_recomputed_independently(gpt2, tinystories_models, tinystories_streams):
    """bits per byte = -sum ln p / ln 2 / bytes with p from `probabilities` target by target and the bytes
    the UTF-8 length of the documents less the stream's first token (GPT-2 is byte-level)."""
    docs = tinystories_streams[2][:4]
    stream = document_stream(gpt2, docs)
    model = tinystories_models[3]
    nats = -sum(math.log(model.probabilities(stream[max(0, i - 2):i])[stream[i]]) for i in range(1, len(stream)))
    text_bytes = sum(len(d.encode("utf-8")) for d in docs) - len(gpt2.decode([stream[0]]).encode("utf-8"))
    totals = model.score(stream, token_byte_lengths(gpt2))
    assert totals.bytes == text_bytes
    assert totals.bits_per_byte == pytest.approx(nats / math.log(2) / text_bytes, rel=1e-10)


def test_ranking_on_tinystories(gpt2, tinystories_models, tinystories_streams):
    """Kneser-Ney beats the unigram and the unigram beats uniform, on its own training text and on the
    validation text; more context helps up to order 3 at least. GPT-2 tokens, bits per byte."""
    train_ids, valid_ids, _ = tinystories_streams
    byte_lengths = token_byte_lengths(gpt2)
    unigram = UnigramModel.train(train_ids, gpt2.vocab_size)
    for ids in (train_ids, valid_ids):
        uniform_bpb = score_uniform(ids, gpt2.vocab_size, byte_lengths).bits_per_byte
        unigram_bpb = unigram.score(ids, byte_lengths).bits_per_byte
        kn_bpb = [tinystories_models[order].score(ids, byte_lengths).bits_per_byte for order in (1, 2, 3)]
        assert kn_bpb[2] < kn_bpb[1] < kn_bpb[0] < unigram_bpb < uniform_bpb
    assert 1.2 < kn_bpb[2] < 1.5 and 2.0 < unigram_bpb < 2.3  # validation: measured 1.35 and 2.15


def test_baselines_for_a_report(gpt2, tinystories_valid):
    paragraphs = tinystories_valid.read_text(encoding="utf-8").split("\n\n")
    train_docs, docs = paragraphs[:200], paragraphs[200:230]
    baselines = ngram_baselines(gpt2, train_docs, docs, order=2)
    assert list(baselines) == ["uniform", "unigram", "kneser-ney-2"]
    ids, train_ids = document_stream(gpt2, docs), document_stream(gpt2, train_docs)
    expected = KneserNeyModel.train(train_ids, gpt2.vocab_size, 2).score(ids, token_byte_lengths(gpt2))
    assert baselines["kneser-ney-2"] == expected
    assert baselines["uniform"].tokens == baselines["unigram"].tokens == len(ids) - 1


@pytest.mark.parametrize("order", [0, 6, 2.5, True])
def test_unsupported_order_is_a_config_error(order):
    with pytest.raises(ConfigError, match="order"):
        KneserNeyModel.train([0, 1, 2], vocab_size=3, order=order)


def test_bad_streams_are_data_errors():
    with pytest.raises(DataError, match="empty"):
        KneserNeyModel.train([], vocab_size=3)
    with pytest.raises(DataError, match="empty"):
        UnigramModel.train([], vocab_size=3)
    with pytest.raises(DataError, match="id 7, outside the vocabulary 0..2"):
        KneserNeyModel.train([0, 7], vocab_size=3)
    model = KneserNeyModel.train([0, 1, 2], vocab_size=3)
    with pytest.raises(DataError, match="id -1"):
        model.score([0, -1])
    with pytest.raises(DataError, match="byte_lengths"):
        model.score([0, 1], byte_lengths=[1, 1])
    with pytest.raises(DataError, match="1-D"):
        model.score([[0, 1]])
    with pytest.raises(ConfigError, match="vocab_size"):
        UnigramModel.train([0], vocab_size=0)
