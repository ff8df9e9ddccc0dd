"""Reading SFT records: the accepted formats, errors that name the file, line and problem, and hub
datasets through `datasets` (its loading code run on an in-memory dataset; offline a clear error)."""

import json
import sys

import pytest

from slmkit.errors import DataError
from slmkit.finetune import chat_data
from slmkit.finetune.chat_data import load_sft_examples

CHAT = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                     {"role": "assistant", "content": "Hello."}], "check": {"names": ["Max"]}, "id": 7}
PROMPT_COMPLETION = {"prompt": "Name a pet.", "completion": "A cat."}
SHAREGPT = {"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Hi"},
                               {"from": "gpt", "value": "Hello."}], "id": "sharegpt-1"}
CONVERSATIONAL_PC = {"prompt": [{"role": "user", "content": "Q?"}], "completion": [{"role": "assistant", "content": "A."}]}


def write_jsonl(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


def test_jsonl_formats_and_extra_keys(tmp_path):
    path = write_jsonl(tmp_path / "sft.jsonl", [CHAT, "", PROMPT_COMPLETION, CONVERSATIONAL_PC, SHAREGPT])
    conversations = load_sft_examples(str(path))
    assert conversations == [
        CHAT["messages"],
        [{"role": "user", "content": "Name a pet."}, {"role": "assistant", "content": "A cat."}],
        [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}],
        CHAT["messages"],  # ShareGPT's from/value turns map to the same roles and contents
    ]
    assert load_sft_examples(str(path), limit=2) == conversations[:2]


def test_json_list_and_splits(tmp_path):
    (tmp_path / "list.json").write_text(json.dumps([CHAT, PROMPT_COMPLETION]))
    assert len(load_sft_examples(str(tmp_path / "list.json"))) == 2
    (tmp_path / "splits.json").write_text(json.dumps({"train": [CHAT], "test": [PROMPT_COMPLETION, CHAT]}))
    assert len(load_sft_examples(str(tmp_path / "splits.json"), split="test")) == 2
    with pytest.raises(DataError, match="split 'validation'"):
        load_sft_examples(str(tmp_path / "splits.json"), split="validation")


@pytest.mark.parametrize("record, problem", [
    ({"text": "no messages"}, "line 2: missing 'messages'"),
    ({"messages": [{"content": "no role"}, {"role": "assistant", "content": "x"}]}, "line 2 message 0: a message needs 'role'"),
    ({"messages": [{"role": "user"}]}, "line 2 message 0: a message needs 'role' and 'content'"),
    ({"messages": [{"role": "user", "content": "only a question"}]}, "line 2: no assistant turn"),
    ({"messages": [{"role": "narrator", "content": "x"}]}, "line 2 message 0: unknown role 'narrator'"),
    ({"messages": [{"role": "user", "content": 3}]}, "line 2 message 0: 'content' must be a string"),
    ({"messages": []}, "line 2: 'messages' must be a non-empty list"),
    ({"prompt": "x", "completion": ["y"]}, "line 2: 'prompt' and 'completion' must be two strings"),
    ({"conversations": [{"from": "narrator", "value": "x"}]}, "line 2 turn 0: unknown ShareGPT speaker 'narrator'"),
    ({"conversations": [{"from": "human"}]}, "line 2 turn 0: a ShareGPT turn needs 'from' and 'value'"),
    ({"conversations": [{"from": "human", "value": "Hi"}]}, "line 2: no assistant turn"),
    ("[1, 2]", "line 2: a record must be a JSON object"),
    ("{not json", "line 2: not valid JSON"),
])
def test_a_bad_record_names_file_line_and_problem(tmp_path, record, problem):
    path = write_jsonl(tmp_path / "bad.jsonl", [CHAT, record])
    with pytest.raises(DataError) as info:
        load_sft_examples(str(path))
    assert str(path) in str(info.value) and problem in str(info.value)


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_sft_examples(str(tmp_path / "nothing.jsonl"))
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(DataError, match=".jsonl or .json"):
        load_sft_examples(str(tmp_path / "data.csv"))
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="no SFT records"):
        load_sft_examples(str(tmp_path / "empty.jsonl"))


def test_hub_dataset_is_read_through_datasets(monkeypatch):
    datasets = pytest.importorskip("datasets")
    calls = []

    def fake_load_dataset(name, config=None, split=None):
        calls.append((name, config, split))
        return datasets.Dataset.from_list([CHAT, {**CHAT, "messages": CHAT["messages"][1:]}, CHAT])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    monkeypatch.setattr(chat_data, "hub_reachable", lambda: True)
    conversations = load_sft_examples("hf:someone/chats:small", split="test", limit=2)
    assert calls == [("someone/chats", "small", "test")]
    assert [m["content"] for m in conversations[1]] == ["Hi", "Hello."]
    assert load_sft_examples("someone/chats") and calls[-1] == ("someone/chats", None, "train")  # a bare hub id


def test_hub_dataset_offline_or_without_datasets_says_how_to_use_a_file(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(chat_data, "hub_reachable", lambda: False)
    with pytest.raises(DataError, match=r"hub is unreachable.*local \.jsonl"):
        load_sft_examples("hf:someone/chats")
    monkeypatch.setitem(sys.modules, "datasets", None)  # import fails
    with pytest.raises(DataError, match=r"needs the 'datasets' package.*local \.jsonl"):
        load_sft_examples("hf:someone/chats")


def test_a_bad_hub_row_is_named(monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: datasets.Dataset.from_list([CHAT, {"messages": [
        {"role": "user", "content": "q"}]}]))
    monkeypatch.setattr(chat_data, "hub_reachable", lambda: True)
    with pytest.raises(DataError, match=r"hf:someone/chats \(train\) row 1: no assistant turn"):
        load_sft_examples("hf:someone/chats")
