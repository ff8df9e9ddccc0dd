"""The one loss / perplexity / bits-per-byte definition: analytic values (uniform logits), bytes counted by
hand with end-of-text, windows cut as documented, sums over ranks, and the Trainer's validation equal to
scoring the same documents as text (what the quality benchmark relies on)."""

import contextlib
import math

import numpy as np
import pytest
import torch

from slmkit.data import EvalBatches, read_manifest
from slmkit.eval import (
    LikelihoodTotals, document_stream, score_batches, score_documents, score_tokens, token_byte_lengths,
    token_windows,
)
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


def test_bytes_counted_by_hand_with_end_of_text():
    # "héllo" is 6 UTF-8 bytes (é is 2), "ab" 2. Single-byte ids: the stream is
    # h c3 a9 l l o EOT a b EOT -> 10 tokens, 9 targets (the first token is never one);
    # bytes = 5 (héllo without its first byte) + 0 (EOT) + 2 + 0 = 7.
    tok = byte_tokenizer()
    ids = document_stream(tok, ["héllo", "ab"])
    assert ids == [104, 0xC3, 0xA9, 108, 108, 111, 256, 97, 98, 256]
    totals = score_tokens(UniformModel(257), ids, seq_len=4, byte_lengths=token_byte_lengths(tok))
    assert (totals.tokens, totals.bytes) == (9, 7)
    assert totals.loss == pytest.approx(math.log(257))
    assert totals.bits_per_byte == pytest.approx(9 * math.log2(257) / 7)
    # with "ab" merged into one id the same text is 8 targets but still 7 bytes
    merged = byte_tokenizer(merges=[(97, 98)])
    ids = document_stream(merged, ["héllo", "ab"])
    assert ids == [104, 0xC3, 0xA9, 108, 108, 111, 257, 256, 257]
    totals = score_tokens(UniformModel(258), ids, seq_len=4, byte_lengths=token_byte_lengths(merged))
    assert (totals.tokens, totals.bytes) == (8, 7)
    assert totals.bits_per_byte == pytest.approx(8 * math.log2(258) / 7)


def test_token_byte_lengths_pads_unused_ids_and_zeroes_specials():
    tok = byte_tokenizer(merges=[(97, 98)])
    lengths = token_byte_lengths(tok, vocab_size=300)  # a model vocabulary padded past the tokenizer's
    assert lengths.shape == (300,) and lengths.dtype == torch.int64
    assert lengths[97] == 1 and lengths[256] == 2 and lengths[257] == 0 and lengths[258:].sum() == 0


def test_windows_tile_the_stream_as_documented():
    batches = list(token_windows(list(range(10)), seq_len=4, batch_size=2))
    (x0, y0), (x1, y1) = batches
    assert x0.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]] and y0.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert x1.tolist() == [[8, 0, 0, 0]] and y1.tolist() == [[9, -100, -100, -100]]
    targets = torch.cat([y[y != -100] for _, y in batches])
    assert targets.tolist() == list(range(1, 10))  # every token after the first, exactly once
    assert list(token_windows([5], seq_len=4)) == []  # one token: nothing to predict


def test_context_resets_at_each_window():
    class CopiesPrevious(torch.nn.Module):
        """Certain that the next token repeats the previous one, except at a window's first position,
        where it has seen one token only and spreads its guess evenly."""

        def forward(self, x):
            logits = torch.full((*x.shape, 8), -1e4)
            logits.scatter_(-1, x.unsqueeze(-1), 0.0)
            logits[:, 0] = 0.0
            return type("Output", (), {"logits": logits})()

    totals = score_tokens(CopiesPrevious(), [3] * 13, seq_len=4)  # 12 targets in 3 windows
    assert totals.tokens == 12 and totals.nats == pytest.approx(3 * math.log(8))


def test_uniform_model_on_documents(eval_tokenizer):
    docs = ["Once upon a time there was a cat.", "Tom had a red ball. He liked it!", "Ünïcödé ✓"]
    ids = document_stream(eval_tokenizer, docs)
    assert ids.count(eval_tokenizer.eos_id) == 3 and ids[-1] == eval_tokenizer.eos_id
    totals = score_documents(UniformModel(VOCAB), eval_tokenizer, docs, seq_len=8)
    first = len(eval_tokenizer.id_to_bytes(ids[0]))
    text_bytes = sum(len(d.encode("utf-8")) for d in docs) - first
    assert (totals.tokens, totals.bytes) == (len(ids) - 1, text_bytes)
    assert totals.loss == pytest.approx(math.log(VOCAB))
    assert totals.perplexity == pytest.approx(VOCAB)
    assert totals.bits_per_byte == pytest.approx(totals.tokens * math.log2(VOCAB) / text_bytes)
    limited = score_documents(UniformModel(VOCAB), eval_tokenizer, docs, seq_len=8, max_tokens=5)
    assert limited.tokens == 4


def test_totals_add_and_refuse_empty():
    total = LikelihoodTotals(1.5, 3, 4) + LikelihoodTotals(2.5, 5, 6)
    assert total == LikelihoodTotals(4.0, 8, 10)
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


def test_trainer_validation_equals_scoring_the_documents(eval_data_dir, eval_tokenizer, random_model):
    """The Trainer's evaluate() over the prepared val shards == score_documents over the same documents."""
    _, docs = split_documents(eval_data_dir, eval_tokenizer)
    batches = EvalBatches(eval_data_dir, 4, 32, split="val", rank=0, world_size=1, verify=False)
    trainer = evaluate(random_model, batches, torch.device("cpu"), contextlib.nullcontext,
                       token_byte_lengths(eval_tokenizer, VOCAB), Dist())
    text = score_documents(random_model, eval_tokenizer, docs, seq_len=32, batch_size=4)
    assert trainer["val_tokens"] == text.tokens
    assert trainer["val_loss"] == pytest.approx(text.loss, rel=1e-6)
    assert trainer["val_ppl"] == pytest.approx(text.perplexity, rel=1e-6)
    assert trainer["val_bpb"] == pytest.approx(text.bits_per_byte, rel=1e-6)
    assert abs(text.loss - math.log(VOCAB)) > 0.05  # a model whose numbers could have disagreed


def test_ranks_sum_to_the_whole(eval_data_dir, eval_tokenizer, random_model):
    lengths = token_byte_lengths(eval_tokenizer, VOCAB)

    def score(rank, world):
        return score_batches(random_model, EvalBatches(eval_data_dir, 4, 32, split="val", rank=rank,
                                                       world_size=world, verify=False), lengths)

    whole, halves = score(0, 1), score(0, 2) + score(1, 2)
    assert (halves.tokens, halves.bytes) == (whole.tokens, whole.bytes)
    assert halves.nats == pytest.approx(whole.nats, rel=1e-6)
