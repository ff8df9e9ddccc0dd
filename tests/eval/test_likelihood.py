"""The one loss / perplexity / bits-per-byte definition: analytic values (uniform logits), bytes counted by
hand, lm-eval's own rolling windows as the reference for ours, packed rows equal to one forward pass per
window, sums over ranks, and the Trainer's validation equal to scoring the same documents as text (what the
quality benchmark and `slm eval` rely on)."""

import contextlib
import math
import random

import numpy as np
import pytest
import torch
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from slmkit.data import EvalBatches, read_manifest
from slmkit.data.rolling_windows import pack_windows, rolling_windows, window_spans
from slmkit.eval import LikelihoodTotals, document_loglikelihoods, document_stream, score_batches, score_documents
from slmkit.eval import token_byte_lengths
from slmkit.tokenizer import Tokenizer
from slmkit.train.distributed import Dist
from slmkit.train.evaluation import evaluate
from tests.eval.conftest import VOCAB, UniformModel

EOT = "<|endoftext|>"


def byte_tokenizer(merges=()) -> Tokenizer:
    """256 single-byte ids, then one id per merge, then end-of-text."""
    vocab = {i: bytes([i]) for i in range(256)}
    for k, (left, right) in enumerate(merges):
        vocab[256 + k] = vocab[left] + vocab[right]
    return Tokenizer(vocab, list(merges), special_tokens={EOT: 256 + len(merges)})


def test_bytes_and_targets_counted_by_hand():
    # "héllo" is 6 UTF-8 bytes (é is 2) and 6 single-byte ids, "ab" 2: each document is scored alone,
    # conditioned on end-of-text, every one of its tokens a target and the end-of-text after it not.
    tok = byte_tokenizer()
    totals = score_documents(UniformModel(257), tok, ["héllo", "ab"], seq_len=4)
    assert (totals.tokens, totals.bytes, totals.words, totals.documents) == (8, 8, 2, 2)
    assert totals.loss == pytest.approx(math.log(257))
    assert totals.bits_per_byte == pytest.approx(8 * math.log2(257) / 8)
    # with "ab" merged into one id the same text is 7 targets but still 8 bytes
    merged = byte_tokenizer(merges=[(97, 98)])
    totals = score_documents(UniformModel(258), merged, ["héllo", "ab"], seq_len=4)
    assert (totals.tokens, totals.bytes) == (7, 8)
    assert totals.bits_per_byte == pytest.approx(7 * math.log2(258) / 8)
    assert totals.word_perplexity == pytest.approx(math.exp(7 * math.log(258) / 2))


def test_token_byte_lengths_pads_unused_ids_and_zeroes_specials():
    tok = byte_tokenizer(merges=[(97, 98)])
    lengths = token_byte_lengths(tok, vocab_size=300)  # a model vocabulary padded past the tokenizer's
    assert lengths.shape == (300,) and lengths.dtype == torch.int64
    assert lengths[97] == 1 and lengths[256] == 2 and lengths[257] == 0 and lengths[258:].sum() == 0


def test_windows_are_lm_evals_rolling_windows():
    assert window_spans(10, 4) == [(0, 1, 4), (4, 5, 4), (6, 9, 2)]
    rng = random.Random(0)
    for _ in range(200):
        tokens = [rng.randrange(100) for _ in range(rng.randrange(1, 60))]
        length = rng.randrange(1, 20)
        theirs = [make_disjoint_window(w) for w in get_rolling_token_windows(tokens, 999, length, 1)]
        ours = list(rolling_windows(tokens, 999, length))
        assert ours == [(list(c), list(x)) for c, x in theirs]
        assert [t for _, x in ours for t in x] == tokens  # every token a target exactly once


def test_packed_rows_hold_whole_windows_and_every_target_once():
    lengths = [3, 2, 17, 1, 4, 9, 40]  # short neighbours share rows; long documents fill theirs
    rows = pack_windows(lengths, 8)
    assert all(sum(w.length for w in row) <= 8 for row in rows)
    per_document = [sum(w.targets for row in rows for w in row if w.document == d) for d in range(len(lengths))]
    assert per_document == lengths and len(rows) < sum(len(window_spans(n, 8)) for n in lengths)


def test_packed_scoring_equals_one_forward_per_window(random_model, eval_tokenizer):
    docs = [eval_tokenizer.encode(t) for t in ["Tom had a red ball. He liked it!", "Hi.", "A cat sat on a mat " * 6]]
    eos = eval_tokenizer.eos_id
    packed = document_loglikelihoods(random_model, docs, eos, seq_len=16, batch_size=2)
    alone = []
    for ids in docs:
        total = 0.0
        for context, continuation in rolling_windows(ids, eos, 16):
            x = torch.tensor([(context + continuation)[:-1]])
            with torch.no_grad():
                logp = random_model(x).logits[0].log_softmax(-1)[len(context) - 1:]
            total += float(logp.gather(1, torch.tensor(continuation)[:, None]).sum())
        alone.append(total)
    torch.testing.assert_close(torch.tensor(packed), torch.tensor(alone, dtype=torch.float64), rtol=1e-5, atol=1e-4)


def test_uniform_model_on_documents(eval_tokenizer):
    docs = ["Once upon a time there was a cat.", "Tom had a red ball. He liked it!", "Ünïcödé ✓"]
    totals = score_documents(UniformModel(VOCAB), eval_tokenizer, docs, seq_len=8)
    tokens = sum(len(ids) for ids in eval_tokenizer.encode_batch(docs))
    text_bytes = sum(len(d.encode("utf-8")) for d in docs)
    assert (totals.tokens, totals.bytes) == (tokens, text_bytes)
    assert totals.loss == pytest.approx(math.log(VOCAB))
    assert totals.perplexity == pytest.approx(VOCAB)
    assert totals.bits_per_byte == pytest.approx(tokens * math.log2(VOCAB) / text_bytes)


def test_totals_add_and_refuse_empty():
    total = LikelihoodTotals(1.5, 3, 4) + LikelihoodTotals(2.5, 5, 6, 2, 1)
    assert total == LikelihoodTotals(4.0, 8, 10, 2, 1)
    assert LikelihoodTotals(1.0, 2, 0).bits_per_byte is None
    with pytest.raises(Exception, match="no tokens were scored"):
        LikelihoodTotals().loss


def split_documents(data_dir, tokenizer) -> tuple[np.ndarray, list[str]]:
    """The val split's tokens, and its documents decoded back to text (each ends at an end-of-text)."""
    tokens = np.concatenate([np.asarray(m, dtype=np.int64) for m in read_manifest(data_dir).memmaps("val")])
    ends = np.flatnonzero(tokens == tokenizer.eos_id)
    starts = np.concatenate([[0], ends[:-1] + 1])
    return tokens, [tokenizer.decode(tokens[s:e].tolist()) for s, e in zip(starts, ends)]


def test_prepared_split_is_the_documented_stream(eval_data_dir, eval_tokenizer):
    tokens, docs = split_documents(eval_data_dir, eval_tokenizer)
    assert tokens[-1] == eval_tokenizer.eos_id and len(docs) > 40
    assert document_stream(eval_tokenizer, docs) == tokens.tolist()
    batches = EvalBatches(eval_data_dir, 4, 32, split="val", rank=0, world_size=1, verify=False)
    assert [e - s for s, e in batches.documents] == [len(ids) for ids in eval_tokenizer.encode_batch(docs)]


def test_trainer_validation_equals_scoring_the_documents(eval_data_dir, eval_tokenizer, random_model):
    """The Trainer's evaluate() over the prepared val shards == score_documents over the same documents."""
    _, docs = split_documents(eval_data_dir, eval_tokenizer)
    batches = EvalBatches(eval_data_dir, 4, 32, split="val", rank=0, world_size=1, verify=False)
    trainer = evaluate(random_model, batches, torch.device("cpu"), contextlib.nullcontext,
                       token_byte_lengths(eval_tokenizer, VOCAB), Dist())
    text = score_documents(random_model, eval_tokenizer, docs, seq_len=32, batch_size=4)
    assert trainer["val_tokens"] == text.tokens == len(tokens_of(docs, eval_tokenizer))
    assert trainer["val_loss"] == pytest.approx(text.loss, rel=1e-6)
    assert trainer["val_ppl"] == pytest.approx(text.perplexity, rel=1e-6)
    assert trainer["val_bpb"] == pytest.approx(text.bits_per_byte, rel=1e-6)
    assert abs(text.loss - math.log(VOCAB)) > 0.05  # a model whose numbers could have disagreed


def tokens_of(docs, tokenizer) -> list[int]:
    return [t for ids in tokenizer.encode_batch(docs) for t in ids]


def test_ranks_sum_to_the_whole(eval_data_dir, eval_tokenizer, random_model):
    lengths = token_byte_lengths(eval_tokenizer, VOCAB)

    def score(rank, world):
        return score_batches(random_model, EvalBatches(eval_data_dir, 4, 32, split="val", rank=rank,
                                                       world_size=world, verify=False), lengths)

    whole, halves = score(0, 1), score(0, 2) + score(1, 2)
    assert (halves.tokens, halves.bytes) == (whole.tokens, whole.bytes)
    assert halves.nats == pytest.approx(whole.nats, rel=1e-6)
