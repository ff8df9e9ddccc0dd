"""`slm tokenizer ...` end to end, in a subprocess like a user runs it, and its one-line errors."""

import re
import subprocess
import sys

import pytest

from slmkit.cli import build_parser, main


def slm(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "slmkit", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_help_lists_only_registered_working_verbs():
    parser = build_parser()
    verbs = set(parser._subparsers._group_actions[0].choices)
    assert "tokenizer" in verbs
    out = slm("--help")
    assert out.returncode == 0 and "tokenizer" in out.stdout
    for verb in verbs:
        assert slm(verb, "--help").returncode == 0


def test_train_then_encode(tmp_path, tinystories_valid):
    out = tmp_path / "tok"
    result = slm("tokenizer", "train", "--input", tinystories_valid, "--vocab-size", 500, "--out", out)
    assert result.returncode == 0, result.stderr
    assert "bytes/token" in result.stdout
    assert (out / "tokenizer.json").is_file() and (out / "tokenizer_train.yaml").is_file()
    shown = slm("tokenizer", "encode", out, "Once upon a time")
    assert shown.returncode == 0 and "' upon'" in shown.stdout
    ids = slm("tokenizer", "encode", out, "Once upon a time", "--ids-only").stdout.split()
    from slmkit.tokenizer import load_tokenizer

    assert list(map(int, ids)) == load_tokenizer(out).encode("Once upon a time")


def test_reported_bytes_per_token_is_the_samples(tmp_path, tinystories_valid):
    """The figure printed is the sample's bytes/token as the reference library encodes it; near the whole text's."""
    import tokenizers

    from slmkit.tokenizer.summary import SAMPLE_BYTES, sample_text

    out = tmp_path / "tok"
    result = slm("tokenizer", "train", "--input", tinystories_valid, "--vocab-size", 600, "--out", out)
    assert result.returncode == 0, result.stderr
    shown = re.search(r"compression: ([0-9.]+) bytes/token on a sample of the training text \((\d+) KiB", result.stdout)
    assert shown, result.stdout
    assert tinystories_valid.stat().st_size > SAMPLE_BYTES and int(shown.group(2)) <= SAMPLE_BYTES // 1024
    reference = tokenizers.Tokenizer.from_file(str(out / "tokenizer.json"))
    sample = sample_text([tinystories_valid])
    n_tokens = sum(len(reference.encode(p, add_special_tokens=False).ids) for p in sample.pieces)
    assert shown.group(1) == f"{sample.n_bytes / n_tokens:.2f}"
    text = tinystories_valid.read_text(encoding="utf-8")
    whole = len(text.encode("utf-8")) / len(reference.encode(text, add_special_tokens=False).ids)
    assert abs(float(shown.group(1)) / whole - 1) < 0.02  # the sample stands for the whole text


@pytest.mark.parametrize(
    "make_input, vocab, message",
    [
        (lambda d: d / "missing.txt", 300, "input file not found"),
        (lambda d: (d / "empty.txt").write_text("") and None or d / "empty.txt", 300, "no text to train on"),
        (lambda d: (d / "latin1.txt").write_bytes(b"caf\xe9") and None or d / "latin1.txt", 300, "not UTF-8"),
        (lambda d: (d / "ok.txt").write_text("hello") and None or d / "ok.txt", 200, "too small"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(tmp_path, capsys, make_input, vocab, message):
    path = make_input(tmp_path)
    code = main(["tokenizer", "train", "--input", str(path), "--vocab-size", str(vocab), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / "o" / "tokenizer.json").exists()


def test_debug_shows_traceback(tmp_path):
    result = slm("--debug", "tokenizer", "encode", tmp_path, "x")
    assert result.returncode != 0 and "Traceback" in result.stderr
