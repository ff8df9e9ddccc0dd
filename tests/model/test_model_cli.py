"""`slm model list|info` through the real CLI entry point."""

from slmkit.cli import main
from slmkit.model import Decoder, preset_names

from .tiny import tiny_config


def test_list_shows_every_preset(capsys):
    assert main(["model", "list"]) == 0
    out = capsys.readouterr().out
    for name in preset_names():
        assert name in out
    assert "283.35M" in out


def test_info_reports_split_flops_kv_and_memory(capsys):
    assert main(["model", "info", "qwen3-283m", "--seq-len", "2048", "--loss-chunk-size", "256"]) == 0
    out = capsys.readouterr().out
    assert "283,347,200" in out and "194,106,880" in out and "89,240,320" in out
    assert "FLOPs/token" in out and "11,520 bytes/token" in out and "chunked loss" in out


def test_info_takes_a_vocab_override_and_a_directory(capsys, tmp_path):
    assert main(["model", "info", "stories15m", "--vocab-size", "4096"]) == 0
    assert "4,096" in capsys.readouterr().out
    Decoder(tiny_config()).save_pretrained(tmp_path / "m")
    assert main(["model", "info", str(tmp_path / "m")]) == 0
    assert "model directory" in capsys.readouterr().out


def test_unknown_preset_is_one_line_error(capsys):
    assert main(["model", "info", "qwen9"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unknown model preset 'qwen9'") and err.count("\n") == 1


def test_group_alone_prints_help(capsys):
    assert main(["model"]) == 2
    assert "list" in capsys.readouterr().out
