"""Round trips, partial UTF-8, special-token handling, streaming and batch encoding."""

import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slmkit.errors import TokenizerError
from slmkit.tokenizer import train_bpe


@pytest.fixture(scope="module")
def trained(tinystories_valid):
    return train_bpe([tinystories_valid], 1000, special_tokens=["<|endoftext|>", "<|pad|>"])


@settings(max_examples=300, deadline=None)
@given(text=st.text())
def test_round_trip_any_string(text, trained, gpt2_tokenizer):
    assert trained.decode(trained.encode(text)) == text
    assert gpt2_tokenizer.decode(gpt2_tokenizer.encode(text)) == text


def test_decode_ids_ending_mid_character(gpt2_tokenizer):
    ids = gpt2_tokenizer.encode("日本")
    assert len(ids) > 2  # CJK characters split across byte tokens
    partial = gpt2_tokenizer.decode(ids[:-1])
    assert partial.endswith("\ufffd") and partial.startswith("日")


def test_special_tokens_allowed_or_plain(trained):
    eos = trained.special_tokens["<|endoftext|>"]
    assert trained.encode("a<|endoftext|>b").count(eos) == 1
    plain = trained.encode("a<|endoftext|>b", allowed_special="none")
    assert eos not in plain and trained.decode(plain) == "a<|endoftext|>b"
    only_pad = trained.encode("<|pad|><|endoftext|>", allowed_special={"<|pad|>"})
    assert only_pad[0] == trained.special_tokens["<|pad|>"] and eos not in only_pad
    with pytest.raises(TokenizerError, match="not special tokens"):
        trained.encode("x", allowed_special={"<|nope|>"})


def test_unknown_id_is_a_clear_error(trained):
    with pytest.raises(TokenizerError, match="outside the vocabulary"):
        trained.decode([trained.vocab_size + 5])


def test_encode_iterable_equals_encode_with_flat_memory(trained, tinystories_train):
    text = tinystories_train.read_text(encoding="utf-8")
    with open(tinystories_train, encoding="utf-8", newline="") as f:
        streamed = list(trained.encode_iterable(f))
    assert streamed == trained.encode(text)

    # Memory stays flat: streaming 10x a text holds a small buffer, never the stream. (The
    # pre-token cache is warm from the encode above, so what remains is the streaming buffer.)
    piece = text[:200_000]
    piece_lines = piece.splitlines(keepends=True)  # built before measuring: the caller's memory

    def lines(n):
        for _ in range(n):
            yield from piece_lines

    tracemalloc.start()
    count = sum(1 for _ in trained.encode_iterable(lines(10)))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert count > 9 * len(trained.encode(piece))
    assert peak < 100_000, f"peak {peak} bytes while streaming {10 * len(piece)} characters"


def test_batch_encode_paths_agree(trained, tinystories_valid):
    docs = tinystories_valid.read_text(encoding="utf-8").split("\n\n")[:400]
    serial = [trained.encode(d) for d in docs]
    assert trained.encode_batch(docs, fast=False, num_workers=2) == serial
    assert trained.encode_batch(docs, fast=True) == serial
