"""Preference records in TRL's three formats -> PreferencePair, and a clear error naming the record for each
kind of bad one."""

import json

import pytest

from slmkit.align.preference_data import PreferencePair, load_preference_pairs, record_to_pair
from slmkit.errors import DataError

USER = {"role": "user", "content": "Tell me a story."}
GOOD = {"role": "assistant", "content": "Once upon a time."}
BAD = {"role": "assistant", "content": "No."}


def test_standard_strings():
    pair = record_to_pair({"prompt": "Tell me a story.", "chosen": "Once upon a time.", "rejected": "No."}, "r")
    assert pair == PreferencePair([USER], [GOOD], [BAD])


def test_conversational_explicit_prompt_keeps_earlier_turns():
    prompt = [{"role": "system", "content": "Be kind."}, USER, GOOD, {"role": "user", "content": "Another."}]
    pair = record_to_pair({"prompt": prompt, "chosen": [GOOD], "rejected": [BAD], "flaw": "x"}, "r")
    assert pair.prompt == prompt and pair.chosen == [GOOD] and pair.rejected == [BAD]


def test_implicit_prompt_is_the_shared_start():
    pair = record_to_pair({"chosen": [USER, GOOD], "rejected": [USER, BAD]}, "r")
    assert pair == PreferencePair([USER], [GOOD], [BAD])


@pytest.mark.parametrize("record, message", [
    ({"prompt": "p", "chosen": "c"}, "needs 'chosen' and 'rejected'"),
    ({"prompt": "p", "chosen": "c", "rejected": [BAD]}, "three strings or three lists"),
    ({"chosen": "c", "rejected": "r"}, "plain strings need a 'prompt'"),
    ({"chosen": [GOOD], "rejected": [BAD]}, "share no first message"),
    ({"prompt": [USER], "chosen": [USER], "rejected": [BAD]}, "'chosen' has no assistant message"),
    ({"prompt": [USER], "chosen": [{"role": "robot", "content": "x"}], "rejected": [BAD]}, "unknown role"),
    ({"prompt": [], "chosen": [GOOD], "rejected": [BAD]}, "prompt is empty"),
    (["not", "an", "object"], "must be a JSON object"),
])
def test_bad_records_name_themselves(record, message):
    with pytest.raises(DataError, match=message) as e:
        record_to_pair(record, "prefs.jsonl line 7")
    assert str(e.value).startswith("prefs.jsonl line 7")


def test_load_reads_files_and_names_the_bad_line(tmp_path):
    path = tmp_path / "prefs.jsonl"
    good = {"prompt": "Hi", "chosen": "Hello!", "rejected": "Go away."}
    path.write_text(json.dumps(good) + "\n\n" + json.dumps(good) + "\n")
    assert len(load_preference_pairs(path)) == 2 and len(load_preference_pairs(path, limit=1)) == 1
    path.write_text(json.dumps(good) + "\n{oops\n")
    with pytest.raises(DataError, match="line 2: not valid JSON"):
        load_preference_pairs(path)
    with pytest.raises(DataError, match="preference data not found"):
        load_preference_pairs(tmp_path / "missing.jsonl")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(DataError, match="holds no preference records"):
        load_preference_pairs(tmp_path / "empty.jsonl")


def test_a_hub_dataset_offline_says_so(monkeypatch):
    monkeypatch.setattr("slmkit.finetune.chat_data.hub_reachable", lambda: False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    with pytest.raises(DataError, match="unreachable.*prompt.*chosen.*rejected"):
        load_preference_pairs("hf:trl-lib/ultrafeedback_binarized")
