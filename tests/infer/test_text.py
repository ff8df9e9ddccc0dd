"""TextStream: UTF-8-safe deltas, stop strings across tokens, and ids a padded vocabulary has no text for."""

from slmkit.infer.text import TextStream
from slmkit.tokenizer import Tokenizer


def byte_tokenizer() -> Tokenizer:
    return Tokenizer({i: bytes([i]) for i in range(256)}, [], special_tokens={"<|endoftext|>": 256})


def test_half_characters_are_held_and_stop_strings_span_tokens():
    stream = TextStream(byte_tokenizer(), stop=["END"])
    deltas = [stream.push(b) for b in "é!".encode("utf-8")]  # é is two bytes
    assert deltas[0] == "" and "".join(deltas) + stream.finish() == "é!"
    stream = TextStream(byte_tokenizer(), stop=["END"])
    shown = "".join(stream.push(b) for b in b"abEN") + stream.push(ord("D"))
    assert shown == "ab" and stream.stopped


def test_an_id_past_the_tokenizer_shows_nothing():
    stream = TextStream(byte_tokenizer())
    assert stream.push(300) == "" and stream.push(ord("a")) == "a" and stream.push(256) == ""
    assert stream.finish() == "" and stream.text == "a"
