"""Saving our tokenizers in Hugging Face format: `tokenizers` and `transformers` give identical ids."""

import json

import pytest
import tokenizers

from slmkit.errors import TokenizerError
from slmkit.tokenizer import load_tokenizer, train_bpe

SAMPLES = [
    "Once upon a time, there was a little girl named Lily.<|endoftext|>She liked to play outside.",
    "Numbers 1234567 and emoji 😀👍🏽, CJK 中文, accents café, tabs\tand\n\nnewlines   spaces.",
    "'s 'll 'RE don't <|im_start|>",
]


@pytest.fixture(scope="module", params=["gpt2", "llama3"])
def saved(request, tmp_path_factory, tinystories_valid):
    tok = train_bpe([tinystories_valid], 800, special_tokens=["<|endoftext|>", "<|im_start|>"], pattern=request.param)
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}<|endoftext|>{% endfor %}"
    out = tmp_path_factory.mktemp("tok")
    tok.save(out)
    return tok, out


def test_tokenizers_library_loads_with_identical_ids(saved, tinystories_valid):
    tok, out = saved
    ref = tokenizers.Tokenizer.from_file(str(out / "tokenizer.json"))
    text = tinystories_valid.read_text(encoding="utf-8")[:200_000]
    for sample in SAMPLES + [text]:
        assert ref.encode(sample).ids == tok.encode(sample)
        assert ref.decode(tok.encode(sample), skip_special_tokens=False) == sample
    assert ref.get_vocab_size() == tok.vocab_size


def test_transformers_loads_with_identical_ids(saved):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tok, out = saved
    for hf in (PreTrainedTokenizerFast.from_pretrained(str(out)), AutoTokenizer.from_pretrained(str(out))):
        for sample in SAMPLES:
            assert hf(sample, add_special_tokens=False)["input_ids"] == tok.encode(sample)
        assert hf.eos_token == "<|endoftext|>"
        assert hf.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False) == "hi<|endoftext|>"


def test_reload_is_identical(saved):
    tok, out = saved
    again = load_tokenizer(out)
    assert again.fingerprint() == tok.fingerprint()
    assert again.chat_template == tok.chat_template and again.eos_id == tok.eos_id


def test_truncated_or_foreign_files_are_clear_errors(saved, tmp_path):
    _, out = saved
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "tokenizer.json").write_text((out / "tokenizer.json").read_text()[:5000])
    with pytest.raises(TokenizerError, match="not valid JSON"):
        load_tokenizer(broken)
    wordpiece = tmp_path / "wp"
    wordpiece.mkdir()
    (wordpiece / "tokenizer.json").write_text(json.dumps({"model": {"type": "WordPiece", "vocab": {}}}))
    with pytest.raises(TokenizerError, match="not BPE"):
        load_tokenizer(wordpiece)
    with pytest.raises(TokenizerError, match="no tokenizer"):
        load_tokenizer(tmp_path)
