"""The bytes-per-token sample: bounded, spread over the input, cut between words, and its figure."""

import re

import tokenizers

from slmkit.tokenizer import train_bpe_from_texts
from slmkit.tokenizer.summary import bytes_per_token, sample_text

WORD = re.compile(r"w\d{7}")


def numbered_words(first: int, count: int) -> str:
    """' w0000001 w0000002 ...': every word says where it is, so a piece's place can be read from it."""
    return "".join(f" w{i:07d}" for i in range(first, first + count))


def test_small_input_is_taken_whole(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_bytes("héllo wörld\r\n".encode())  # \r\n kept as training reads it (newline="")
    b.write_text("")
    sample = sample_text([a, b], sample_bytes=1024)
    assert sample.whole and sample.pieces == ["héllo wörld\r\n"] and sample.n_bytes == a.stat().st_size


def test_pieces_are_whole_words_spread_over_all_files(tmp_path):
    per_file = 40_000
    paths = []
    for k in range(2):
        path = tmp_path / f"{k}.txt"
        path.write_text(numbered_words(k * per_file, per_file))
        paths.append(path)
    text = "".join(p.read_text() for p in paths)
    sample = sample_text(paths, sample_bytes=16 << 10, n_pieces=16)
    assert not sample.whole and len(sample.pieces) == 16
    assert sample.n_bytes == sum(len(p.encode()) for p in sample.pieces) <= 16 << 10
    firsts = []
    for piece in sample.pieces:
        assert piece in text and piece.startswith(" w") and not piece.endswith(" ")
        numbers = [int(w[1:]) for w in piece.split()]
        assert all(WORD.fullmatch(w) for w in piece.split())  # no word was cut by a window's edge
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
        firsts.append(numbers[0])
    total_words = 2 * per_file
    # Evenly spaced windows: the first at the start, the last ending at the end, equal steps between.
    assert firsts[0] <= 2 and firsts[-1] + len(sample.pieces[-1].split()) >= total_words - 2
    steps = [b - a for a, b in zip(firsts, firsts[1:])]
    assert max(steps) - min(steps) <= 2
    assert any(f < per_file for f in firsts) and any(f >= per_file for f in firsts)  # from both files


def test_windows_cut_inside_multibyte_characters_give_valid_text(tmp_path):
    path = tmp_path / "mixed.txt"
    path.write_text(" ".join(["café", "日本語", "naïve", "😀x"] * 5000))
    text = path.read_text()
    sample = sample_text([path], sample_bytes=4099, n_pieces=7)  # windows of 585 bytes: odd offsets
    assert sample.pieces and all(piece in text for piece in sample.pieces)


def test_bytes_per_token_against_the_reference_library(tmp_path, tinystories_valid):
    story = tinystories_valid.read_text(encoding="utf-8")
    tok = train_bpe_from_texts([story[:200_000]], 400)
    tok.save(tmp_path)
    reference = tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    sample = sample_text([tinystories_valid], sample_bytes=64 << 10)
    n_tokens = sum(len(reference.encode(p, add_special_tokens=False).ids) for p in sample.pieces)
    assert bytes_per_token(tok, sample) == sample.n_bytes / n_tokens
