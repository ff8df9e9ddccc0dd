"""BPE training: tie-break rule, incremental counts against a naive recount, determinism, sizes."""

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slmkit.errors import TokenizerError
from slmkit.tokenizer import learn_merges, train_bpe, train_bpe_from_texts
from slmkit.tokenizer.patterns import GPT2
from slmkit.tokenizer.pretoken_counts import count_pretokens
from slmkit.tokenizer.pretokenize import compile_pattern, special_splitter, split_on_specials


def merge_bytes(vocab, merges):
    return [(vocab[a], vocab[b]) for a, b in merges]


def naive_merges(word_counts: dict[bytes, int], n_merges: int) -> list[tuple[bytes, bytes]]:
    """The definition, recounting every pair over every word at every step."""
    words = {tuple(bytes([b]) for b in w): c for w, c in word_counts.items()}
    merges = []
    for _ in range(n_merges):
        pairs = Counter()
        for word, c in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += c
        if not pairs:
            break
        best = max(pairs, key=lambda p: (pairs[p], p[0], p[1]))
        merges.append(best)
        new_words = Counter()
        for word, c in words.items():
            out, k = [], 0
            while k < len(word):
                if k + 1 < len(word) and (word[k], word[k + 1]) == best:
                    out.append(word[k] + word[k + 1])
                    k += 2
                else:
                    out.append(word[k])
                    k += 1
            new_words[tuple(out)] += c
        words = new_words
    return merges


def test_hand_computed_example():
    # The classic example (Sennrich et al.; CS336): 'es' and 'st' tie at 9 -> the greater pair 'st' wins.
    vocab, merges = learn_merges({b"low": 5, b"lower": 2, b"widest": 3, b"newest": 6}, 6)
    assert merge_bytes(vocab, merges) == [
        (b"s", b"t"),
        (b"e", b"st"),
        (b"o", b"w"),
        (b"l", b"ow"),
        (b"w", b"est"),
        (b"n", b"e"),
    ]


def test_ties_break_on_first_then_second_element():
    vocab, merges = learn_merges({b"ab": 2, b"cd": 2}, 2)
    assert merge_bytes(vocab, merges) == [(b"c", b"d"), (b"a", b"b")]
    vocab, merges = learn_merges({b"ab": 1, b"ac": 1}, 1)
    assert merge_bytes(vocab, merges) == [(b"a", b"c")]
    # A longer first element is greater than its own prefix: (b"ab", b"x") beats (b"a", b"bx")-style pairs.
    vocab, merges = learn_merges({b"abx": 3, b"aby": 3, b"zab": 1}, 3)
    assert merge_bytes(vocab, merges)[0] == (b"a", b"b")
    assert merge_bytes(vocab, merges)[1:] == [(b"ab", b"y"), (b"ab", b"x")]


@settings(max_examples=150, deadline=None)
@given(
    words=st.dictionaries(
        st.binary(min_size=1, max_size=7).filter(lambda b: len(set(b)) <= 4), st.integers(1, 9), max_size=25
    ),
    n_merges=st.integers(0, 30),
)
def test_incremental_counts_equal_naive_recount(words, n_merges):
    vocab, merges = learn_merges(words, n_merges)
    assert merge_bytes(vocab, merges) == naive_merges(words, n_merges)


def test_vocab_size_counts_bytes_merges_and_specials(tinystories_valid):
    tok = train_bpe([tinystories_valid], 300, special_tokens=["<|endoftext|>", "<|pad|>"])
    assert tok.vocab_size == 300
    assert len(tok.merges) == 300 - 256 - 2
    assert tok.special_tokens == {"<|endoftext|>": 298, "<|pad|>": 299}


def test_training_is_deterministic_and_independent_of_workers(tinystories_valid):
    a = train_bpe([tinystories_valid], 600, num_workers=1)
    b = train_bpe([tinystories_valid], 600, num_workers=2)
    assert a.merges == b.merges and a.vocab == b.vocab
    assert a.fingerprint() == b.fingerprint()


@pytest.mark.parametrize("name", ["tinystories_train_head_2MiB.txt", "tinystories_train_head_lowercased.txt"])
def test_parallel_chunked_counts_equal_whole_text_counts(name):
    from tests.conftest import shared_path

    path = shared_path("tinystories", name)
    text = path.read_text(encoding="utf-8")
    regex, splitter = compile_pattern(GPT2), special_splitter(["<|endoftext|>"])
    expected = Counter()
    for k, part in enumerate(split_on_specials(text, splitter)):
        if k % 2 == 0:
            expected.update(regex.findall(part))
    got = count_pretokens([path], GPT2, ["<|endoftext|>"], num_workers=2, chunk_bytes=50_000)
    assert got == expected


def test_special_tokens_are_never_merged_into():
    text = "<|endoftext|>hello<|endoftext|>hello<|endoftext|>" * 50
    tok = train_bpe_from_texts([text], 270)
    for i, token in tok.vocab.items():
        assert b"<|" not in token or token == b"<|", (i, token)
    assert tok.encode("hello<|endoftext|>")[-1] == tok.special_tokens["<|endoftext|>"]


def test_same_bytes_from_two_merges_keep_one_id():
    # 'abc' can form as (ab, c) in one word and (a, bc) in another; it must get a single id.
    words = {b"abc": 10, b"ab": 9, b"bcz": 8, b"zbc": 8, b"xab": 1}
    vocab, merges = learn_merges(words, 10)
    tokens = list(vocab.values())
    assert len(tokens) == len(set(tokens))


def test_bad_vocab_size_and_empty_input(tmp_path):
    with pytest.raises(TokenizerError, match="at least 256 bytes"):
        train_bpe_from_texts(["abc"], 256)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(TokenizerError, match="no text"):
        train_bpe([empty], 300)
    with pytest.raises(TokenizerError, match="not found"):
        train_bpe([tmp_path / "missing.txt"], 300)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9 au lait".encode("latin-1"))
    with pytest.raises(TokenizerError, match="not UTF-8"):
        train_bpe([latin1], 300)
