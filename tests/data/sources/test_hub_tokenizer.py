"""tokenizer.hub_id: a pretrained tokenizer fetched once into tokenizer.path (the fetch itself stubbed with the
real Qwen3 files from ../shared/data, as the hub cannot be reached here), and offline a one-line message that
says which files to put where."""

from __future__ import annotations

import pytest

from slmkit.errors import OfflineError
from slmkit.tokenizer import load_tokenizer
from tests.conftest import shared_path
from tests.data.conftest import run_prepare


def test_offline_message_names_the_files_and_the_directory(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(OfflineError) as err:
        run_prepare(tmp_path / "data", tmp_path / "qwen3-tok", ["tokenizer.hub_id=Qwen/Qwen3-0.6B",
                                                                "sources={s: {kind: synthetic, limit: 20}}"])
    message = str(err.value)
    assert "\n" not in message and "'Qwen/Qwen3-0.6B'" in message
    assert "put its tokenizer.json and tokenizer_config.json" in message and f"in {tmp_path / 'qwen3-tok'}/" in message
    assert not (tmp_path / "qwen3-tok").exists() and not (tmp_path / "data").exists()


def test_fetched_tokenizer_is_used_by_prepare(monkeypatch, tmp_path):
    import huggingface_hub

    fetched = []

    def fake_download(repo_id, filename, **kwargs):
        fetched.append((repo_id, filename))
        path = shared_path("qwen3-tokenizer") / filename
        if not path.exists():
            from huggingface_hub.errors import EntryNotFoundError

            raise EntryNotFoundError(filename)
        return str(path)

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no reachability probe
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    manifest = run_prepare(tmp_path / "data", tmp_path / "qwen3-tok", ["tokenizer.hub_id=Qwen/Qwen3-0.6B",
                                                                       "sources={s: {kind: synthetic, limit: 30}}"])
    assert ("Qwen/Qwen3-0.6B", "tokenizer.json") in fetched
    assert manifest.data["tokenizer"]["vocab_size"] == 151_669
    tok = load_tokenizer(tmp_path / "qwen3-tok")
    assert tok.chat_template and "<|im_start|>" in tok.chat_template  # tokenizer_config.json came along
    assert (tmp_path / "qwen3-tok" / "tokenizer.json").read_bytes() == shared_path("qwen3-tokenizer",
                                                                                   "tokenizer.json").read_bytes()
    run_prepare(tmp_path / "data2", tmp_path / "qwen3-tok", ["tokenizer.hub_id=Qwen/Qwen3-0.6B",
                                                             "sources={s: {kind: synthetic, limit: 30}}"])
    assert fetched.count(("Qwen/Qwen3-0.6B", "tokenizer.json")) == 1  # fetched once, then read from the directory
