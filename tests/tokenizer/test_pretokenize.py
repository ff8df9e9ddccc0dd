"""Safe chunk boundaries: pre-tokenizing the two sides apart must equal pre-tokenizing the whole."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slmkit.tokenizer.patterns import PATTERNS
from slmkit.tokenizer.pretokenize import SAFE_CUT, compile_pattern, iter_text_chunks, last_safe_cut

ALPHABET = "ab XY 12 .,'!\n\r\t  é中😀\u0301"


@pytest.mark.parametrize("name", sorted(PATTERNS))
@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=ALPHABET, max_size=60))
def test_every_safe_cut_preserves_pieces(name, text):
    regex = compile_pattern(PATTERNS[name])
    whole = regex.findall(text)
    for match in SAFE_CUT.finditer(text):
        i = match.start()
        assert regex.findall(text[:i]) + regex.findall(text[i:]) == whole, (text, i)


def test_newline_is_not_a_safe_cut():
    # The reason the rule is "a space between non-spaces": a cut after '\n' changes pieces.
    regex = compile_pattern(PATTERNS["gpt2"])
    text = "end. \nNext"
    i = text.index("\n") + 1
    assert regex.findall(text[:i]) + regex.findall(text[i:]) != regex.findall(text)


def test_last_safe_cut_prefers_specials_and_spaces():
    assert last_safe_cut("abc<|endoftext|>def", ["<|endoftext|>"]) == 3
    assert last_safe_cut("one two  three", []) == 3
    assert last_safe_cut("nospaceshere", []) == 0


def test_file_chunks_reassemble_exactly(tinystories_train):
    chunks = list(iter_text_chunks(str(tinystories_train), chunk_bytes=100_000, specials=["<|endoftext|>"]))
    assert len(chunks) > 10
    assert "".join(chunks) == tinystories_train.read_text(encoding="utf-8")
