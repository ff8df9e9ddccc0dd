"""The read side over a prepared directory: manifest checks (corruption, tokenizer mismatch) through
the loaders, eval windows that cover every token once, resumable train batches, torchrun ranks."""

import numpy as np
import pytest
import torch

from slmkit.data import EvalBatches, TrainBatches
from slmkit.errors import DataError
from slmkit.tokenizer import train_bpe_from_texts


def test_corrupted_shard_and_tokenizer_mismatch_are_clear_errors(prepared, tmp_path):
    import shutil

    out, manifest = prepared
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    other = train_bpe_from_texts(["a different tiny corpus of words and more words"], 300)
    with pytest.raises(DataError, match="tokenizer mismatch"):
        TrainBatches(copy, batch_size=2, seq_len=16, tokenizer=other)
    TrainBatches(copy, batch_size=2, seq_len=16, tokenizer=manifest.fingerprint)  # the right one passes
    shard = copy / manifest.shards("train")[1]["file"]
    data = bytearray(shard.read_bytes())
    data[100] ^= 0xFF  # one flipped byte, same size
    shard.write_bytes(bytes(data))
    with pytest.raises(DataError, match="corrupt") as err:
        TrainBatches(copy, batch_size=2, seq_len=16)
    assert shard.name in str(err.value) and "\n" not in str(err.value)


def test_eval_batches_score_every_document_token_exactly_once(prepared):
    out, manifest = prepared
    tokens = np.concatenate([np.asarray(m) for m in manifest.memmaps("val")]).astype(np.int64)
    document_tokens = tokens[tokens != manifest.eos_id]  # end-of-text separates documents, it is not a target
    for world in (1, 3):
        seen = []
        for rank in range(world):
            for x, y, doc_ids in EvalBatches(out, batch_size=3, seq_len=50, rank=rank, world_size=world):
                assert x.shape == y.shape == doc_ids.shape == (x.shape[0], 50)
                mask = y != -100
                same_window = doc_ids[:, 1:] == doc_ids[:, :-1]
                shifted = mask[:, :-1] & same_window  # y is x shifted by one inside each window
                assert torch.equal(x[:, 1:][shifted], y[:, :-1][shifted])
                assert (doc_ids[mask] >= 0).all() and (x[doc_ids < 0] == 0).all()
                seen.append(y[mask].numpy())
        got = np.concatenate(seen)
        assert sorted(got.tolist()) == sorted(document_tokens.tolist())
    ordered = np.concatenate([y[y != -100].numpy() for _, y, _ in EvalBatches(out, 4, 50, rank=0, world_size=1)])
    assert np.array_equal(ordered, document_tokens)  # one rank: every target once, in order


def test_train_loader_state_restores_identical_batches(prepared):
    out, _ = prepared
    a = TrainBatches(out, batch_size=4, seq_len=32, seed=5, rank=0, world_size=1)
    for _ in range(7):
        a.next_batch()
    state = a.state_dict()
    expected = [a.next_batch() for _ in range(5)]
    b = TrainBatches(out, batch_size=4, seq_len=32, seed=5, rank=0, world_size=1)
    b.load_state_dict(state)
    for (x1, y1), (x2, y2) in zip(expected, (b.next_batch() for _ in range(5))):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
        assert torch.equal(x1[:, 1:], y1[:, :-1])
    other_rank = TrainBatches(out, batch_size=4, seq_len=32, seed=5, rank=1, world_size=2)
    other_seed = TrainBatches(out, batch_size=4, seq_len=32, seed=6, rank=0, world_size=1)
    first = TrainBatches(out, batch_size=4, seq_len=32, seed=5, rank=0, world_size=1).next_batch()[0]
    assert not torch.equal(first, other_rank.next_batch()[0])
    assert not torch.equal(first, other_seed.next_batch()[0])


def test_rank_defaults_from_torchrun_environment(prepared, monkeypatch):
    out, _ = prepared
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    loader = TrainBatches(out, batch_size=2, seq_len=8)
    assert (loader.rank, loader.world_size) == (1, 2)


def test_document_windows_are_whole_random_documents(prepared):
    """Every window is end-of-text + a whole document, repeated with documents drawn at random until it is full
    (the last one cut), over the documents of every shard; windows vary from step to step (not the same few
    thousand each epoch), and the batches resume by step as random ones do."""
    out, manifest = prepared
    eos = manifest.eos_id
    loader = TrainBatches(out, batch_size=16, seq_len=400, seed=1, rank=0, world_size=1, window_start="document")
    stream = loader.stream
    tokens = stream.read(0, len(stream)).tolist()
    ends = [i for i, t in enumerate(tokens) if t == eos]
    documents = {tuple(tokens[a + 1:b]) for a, b in zip(ends, ends[1:]) if b > a + 1}
    assert len(stream.shards) > 1 and len(loader.documents) >= len(documents)  # every document (repeats counted)
    seen, several = set(), 0
    for _ in range(20):
        x, y = loader.next_batch()
        assert torch.equal(x[:, 1:], y[:, :-1])
        for row in torch.cat([x, y[:, -1:]], 1).tolist():
            assert row[0] == eos
            cuts = [i for i, t in enumerate(row) if t == eos] + [len(row)]
            *whole, last = [tuple(row[a + 1:b]) for a, b in zip(cuts, cuts[1:])]
            assert all(piece in documents for piece in whole)  # complete documents between end-of-texts
            assert any(doc[:len(last)] == last for doc in documents)  # the last one is a document's start
            seen.add(tuple(row))
            several += len(cuts) > 2
    assert len(seen) > 200 and several > 20  # random draws (a story longer than the window fills one alone)
    random_windows = TrainBatches(out, batch_size=16, seq_len=400, seed=1, rank=0, world_size=1).next_batch()[0]
    assert not (random_windows[:, 0] == eos).all()  # the default draws any token position
    again = TrainBatches(out, batch_size=16, seq_len=400, seed=1, rank=0, world_size=1, window_start="document")
    again.load_state_dict(loader.state_dict())
    assert torch.equal(loader.next_batch()[0], again.next_batch()[0])
    with pytest.raises(DataError, match="window_start must be 'random' or 'document'"):
        TrainBatches(out, batch_size=2, seq_len=16, window_start="story")
