"""`slm prepare` and `slm data stats` end to end: outputs, the allocator setting, one-line errors,
and nothing created when a source is missing or offline."""

import pytest

from slmkit.cli import main


def test_cli_prepare_and_stats(tmp_path, small_tokenizer_dir, capsys):
    out = tmp_path / "out"
    code = main(["prepare", "configs/synthetic.yaml", "sources.stories.limit=200", f"out_dir={out}",
                 f"tokenizer.path={small_tokenizer_dir}", "workers=1", "--no-progress"])
    assert code == 0
    assert (out / "manifest.json").is_file() and (out / "data_config.yaml").is_file()
    assert (out / "tokenizer" / "tokenizer.json").is_file() and not (out / ".work").exists()
    capsys.readouterr()
    assert main(["data", "stats", str(out), "--top", "5"]) == 0
    text = capsys.readouterr().out
    assert "train:" in text and "documents" in text and "top tokens" in text and "' the'" in text


def test_allocator_setting_only_when_slm_prepare_owns_the_process(tmp_path, small_tokenizer_dir, monkeypatch):
    """The mmap-threshold setting is process-wide and slows torch: never from Python callers (the demo
    and `slm train` prepare in-process), only for `slm prepare` run as a command."""
    import sys

    from slmkit.data import heap

    calls = []
    monkeypatch.setattr(heap, "large_arrays_from_mmap", lambda: calls.append(1))  # never touch this process
    argv = ["prepare", "configs/synthetic.yaml", "sources.stories.limit=30", f"tokenizer.path={small_tokenizer_dir}",
            "workers=1"]
    assert main(argv + [f"out_dir={tmp_path / 'a'}", "--no-progress"]) == 0
    assert calls == []
    monkeypatch.setattr(sys, "argv", ["slm", *argv, f"out_dir={tmp_path / 'b'}", "--no-progress"])
    assert main() == 0
    assert calls == [1]


@pytest.mark.parametrize("override, message", [
    ("sources.stories.limt=5", "unknown config key 'sources.stories.limit'".replace("limit'", "limt'")),
    ("sources.stories.limit=0", "no documents"),
])
def test_cli_bad_config_is_one_line_and_writes_nothing(tmp_path, small_tokenizer_dir, capsys, override, message):
    out = tmp_path / "out"
    code = main(["prepare", "configs/synthetic.yaml", override, f"out_dir={out}",
                 f"tokenizer.path={small_tokenizer_dir}", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.startswith("error:") and message in err and "\n" not in err
    assert not (out / "manifest.json").exists()


def test_offline_prepare_creates_nothing(tmp_path, small_tokenizer_dir, monkeypatch, capsys):
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    out = tmp_path / "out"
    code = main(["prepare", "configs/tinystories.yaml", f"out_dir={out}", f"tokenizer.path={small_tokenizer_dir}",
                 "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "offline" in err and "\n" not in err
    assert not out.exists()  # not even out_dir/.work


def test_missing_file_creates_nothing(tmp_path, small_tokenizer_dir, capsys):
    out = tmp_path / "out"
    code = main(["prepare", "configs/local-text.yaml", f"sources.text.paths=[{tmp_path}/nope*.txt]",
                 f"out_dir={out}", f"tokenizer.path={small_tokenizer_dir}", "--no-progress"])
    assert code == 1 and "no input file matches" in capsys.readouterr().err
    assert not out.exists()
