"""Chat templates render exactly as transformers' apply_chat_template; no template -> a transcript."""

import pytest

from slmkit.errors import TokenizerError
from slmkit.tokenizer import train_bpe_from_texts
from slmkit.tokenizer.chat_template import chat_stop_strings, render_chat
from tests.conftest import shared_path

CONVERSATION = [
    {"role": "system", "content": "You are kind."},
    {"role": "user", "content": "Tell me a story."},
    {"role": "assistant", "content": "Once upon a time."},
    {"role": "user", "content": "Another one?"},
]


@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_qwen3_template_equals_transformers(qwen3_tokenizer, add_generation_prompt):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(shared_path("qwen3-tokenizer")))
    expected = hf.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=add_generation_prompt)
    assert qwen3_tokenizer.apply_chat_template(CONVERSATION, add_generation_prompt) == expected
    ids = qwen3_tokenizer.encode(expected)
    assert ids == hf(expected, add_special_tokens=False)["input_ids"]


def test_no_template_is_a_plain_transcript():
    tok = train_bpe_from_texts(["hello there"], 260)
    text = render_chat(tok, CONVERSATION[1:3])
    assert text == "User: Tell me a story.\nAssistant: Once upon a time.\nAssistant:"
    assert chat_stop_strings(tok) == ["\nUser:"]


def test_bad_messages_and_templates_are_clear_errors():
    tok = train_bpe_from_texts(["hello there"], 260)
    with pytest.raises(TokenizerError, match="message 0"):
        render_chat(tok, [{"role": "user"}])
    tok.chat_template = "{% if messages|length > 1 %}{{ raise_exception('one message only') }}{% endif %}x"
    with pytest.raises(TokenizerError, match="one message only"):
        render_chat(tok, CONVERSATION)
    tok.chat_template = "{% for m in messages %}"
    with pytest.raises(TokenizerError, match="not valid Jinja"):
        render_chat(tok, CONVERSATION)
