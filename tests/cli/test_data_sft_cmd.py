"""`slm data sft-synthetic` end to end: both files written, valid JSONL with the counts it prints; bad input is
one line on stderr and a non-zero exit, with nothing written."""

import json
import re
import subprocess
import sys
from collections import Counter

import pytest

from slmkit.cli import main
from slmkit.data.sources.instruction_checks import check_answer
from slmkit.data.sources.instructions import generate_instruction_examples


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_writes_train_and_heldout_with_the_printed_counts(tmp_path):
    out = tmp_path / "data" / "sft.jsonl"
    result = subprocess.run([sys.executable, "-m", "slmkit", "data", "sft-synthetic", "--out", str(out),
                             "--examples", "90", "--heldout", "31", "--seed", "3"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip().splitlines()) == 1
    train, heldout = read_jsonl(out), read_jsonl(tmp_path / "data" / "sft.heldout.jsonl")
    assert len(train) == 90 and len(heldout) == 31
    assert train == list(generate_instruction_examples(90, seed=3))  # the library's examples, as they are
    assert heldout == list(generate_instruction_examples(31, seed=3, split="heldout"))
    for split, rows in (("train", train), ("held-out", heldout)):
        printed = re.search(rf"(\d+) {split} \(story_request (\d+), story_question (\d+), multi_turn (\d+)\)",
                            result.stdout)
        counts = Counter(r["check"]["kind"] for r in rows)
        assert printed and list(map(int, printed.groups())) == [
            len(rows), counts["story_request"], counts["story_question"], counts["multi_turn"]]
        assert all(check_answer(r["check"], r["messages"][-1]["content"]) for r in rows)
    assert str(out) in result.stdout and "sft.heldout.jsonl" in result.stdout
    assert sorted(p.name for p in out.parent.iterdir()) == ["sft.heldout.jsonl", "sft.jsonl"]  # no temporaries left


@pytest.mark.parametrize("name, args, message", [
    ("sft.jsonl", ["--examples", "0"], "examples must be at least 1"),
    ("sft.jsonl", ["--heldout", "-1"], "heldout must be 0 or more"),
    ("sft.jsonl", ["--max-words", "30"], "too small"),
    ("sft.txt", [], "must end in .jsonl"),
])
def test_bad_input_is_one_line_and_nonzero(tmp_path, capsys, name, args, message):
    code = main(["data", "sft-synthetic", "--out", str(tmp_path / name), *args])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert list(tmp_path.iterdir()) == []
