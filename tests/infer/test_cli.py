"""slm generate / chat / quantize end to end, and their one-line errors."""

import io
import sys

from slmkit.cli import main


def test_generate_streams_a_continuation(run_dir, capsys):
    assert main(["generate", str(run_dir), "--prompt", "Once upon", "--max-new-tokens", "8", "--temperature", "0",
                 "--stats"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("Once upon") and "chunks in" in captured.err


def test_generate_with_a_draft_model(run_dir, capsys):
    assert main(["generate", str(run_dir), "--prompt", "The cat", "--draft", str(run_dir), "--temperature", "0",
                 "--max-new-tokens", "8", "--stats"]) == 0
    assert "100% of draft tokens accepted" in capsys.readouterr().err


def test_generate_bad_inputs_are_one_line_errors(run_dir, tmp_path, capsys):
    assert main(["generate", str(run_dir), "--prompt", "x", "--top-p", "1.5"]) == 1
    assert capsys.readouterr().err.strip() == "error: top_p must be in (0, 1], got 1.5"
    assert main(["generate", str(run_dir), "--prompt", "cat " * 100]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: the prompt has") and "context window is 64 tokens" in err and "\n" not in err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text('{"format": "slmkit-quantized", "format_version": 99}')
    assert main(["generate", str(tmp_path / "bad"), "--prompt", "x"]) == 1
    assert "format_version 99 is not supported" in capsys.readouterr().err


def test_chat_reads_piped_stdin_and_keeps_history(run_dir, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("Hello\n/reset\nTell me a story\n"))
    assert main(["chat", str(run_dir), "--max-new-tokens", "5", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    assert "(history cleared)" in out and out.count("\n") >= 3


def test_chat_template_renders_history():
    from slmkit.tokenizer.chat_template import render_chat as render_prompt

    class Tok:
        chat_template = ("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}"
                         "{% if add_generation_prompt %}<|assistant|>{% endif %}")
        eos_token = "<|endoftext|>"

    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"},
                {"role": "user", "content": "again"}]
    assert render_prompt(Tok(), messages) == "<|user|>hi\n<|assistant|>yo\n<|user|>again\n<|assistant|>"
    Tok.chat_template = None
    assert render_prompt(Tok(), messages[:1]) == "User: hi\nAssistant:"


def test_quantize_reports_size_perplexity_and_speed(run_dir, tmp_path, capsys):
    text = tmp_path / "val.txt"
    text.write_text("Once upon a time there was a little cat. " * 20)
    assert main(["quantize", str(run_dir), "--method", "int8", "--out", str(tmp_path / "q8"), "--eval-text",
                 str(text)]) == 0
    out = capsys.readouterr().out
    assert "size:" in out and "perplexity on" in out and "decode speed" in out
    assert main(["generate", str(tmp_path / "q8"), "--prompt", "Once", "--max-new-tokens", "4"]) == 0
