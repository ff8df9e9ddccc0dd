"""The assistant-only loss mask, token by token: on Qwen3's real chat template against transformers' ids and
TRL's span rule built by hand, on the default ChatML template against transformers' own assistant mask
({% generation %} markers), every assistant turn and no user/system token, and the errors."""

import pytest

from slmkit.errors import DataError, TokenizerError
from slmkit.finetune.assistant_mask import assistant_char_spans, tokenize_chat, tokenize_conversations
from slmkit.tokenizer import load_tokenizer, train_bpe_from_texts
from slmkit.tokenizer.chat_template import DEFAULT_CHAT_TEMPLATE, has_generation_markers, with_default_chat_template
from tests.conftest import shared_path

SYSTEM = {"role": "system", "content": "You tell short stories."}
CONVERSATIONS = [
    [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello, how can I help?"}],
    [SYSTEM, {"role": "user", "content": "Tell me about Max."}, {"role": "assistant", "content": "Max is a cat."},
     {"role": "user", "content": "What did he find?"}, {"role": "assistant", "content": "A small red key."}],
    [SYSTEM, {"role": "user", "content": "Who lost the ball?"},
     {"role": "assistant", "content": "<think>\nThe story says Lily.\n</think>\n\nLily lost it."},
     {"role": "user", "content": "And then?"}, {"role": "assistant", "content": "She found it again."},
     {"role": "user", "content": "Thanks"}],  # ends with a user turn: nothing after it is trained
]


@pytest.fixture(scope="module")
def qwen3():
    return load_tokenizer(shared_path("qwen3-tokenizer"))


@pytest.fixture(scope="module")
def qwen3_hf():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(shared_path("qwen3-tokenizer")))


def chatml_span_rule(ids: list[int], header: list[int], im_end: int, newline: int) -> list[bool]:
    """TRL's qwen3 training span (and minimind's): after each "<|im_start|>assistant\\n" up to and including
    the next "<|im_end|>" and the "\\n" after it."""
    mask = [False] * len(ids)
    t = 0
    while t < len(ids):
        if ids[t:t + len(header)] == header:
            t += len(header)
            while ids[t] != im_end:
                mask[t] = True
                t += 1
            mask[t] = True  # <|im_end|>
            if t + 1 < len(ids) and ids[t + 1] == newline:
                mask[t + 1] = True
            t += 1
        else:
            t += 1
    return mask


def test_the_real_qwen3_template_has_no_generation_markers(qwen3):
    assert "im_start" in qwen3.chat_template and not has_generation_markers(qwen3.chat_template)
    assert has_generation_markers(DEFAULT_CHAT_TEMPLATE)


@pytest.mark.parametrize("conversation", CONVERSATIONS, ids=["single", "multi_turn", "thinking_then_user"])
def test_qwen3_mask_equals_trl_span_rule_on_transformers_ids(qwen3, qwen3_hf, conversation):
    expected_ids = list(qwen3_hf.apply_chat_template(conversation, tokenize=True)["input_ids"])
    header = [qwen3_hf.convert_tokens_to_ids("<|im_start|>")] + qwen3_hf.encode("assistant\n", add_special_tokens=False)
    expected_mask = chatml_span_rule(expected_ids, header, qwen3_hf.convert_tokens_to_ids("<|im_end|>"),
                                     qwen3_hf.encode("\n", add_special_tokens=False)[0])
    example = tokenize_chat(qwen3, conversation)
    assert example.ids == expected_ids
    assert example.train_mask == expected_mask
    assert example.straddled == 0


def test_every_assistant_turn_and_no_user_or_system_token(qwen3):
    conversation = CONVERSATIONS[2]
    example = tokenize_chat(qwen3, conversation)
    trained = [qwen3.decode(run) for run in _runs(example.ids, example.train_mask, True)]
    untrained = "".join(qwen3.decode(run) for run in _runs(example.ids, example.train_mask, False))
    # a non-final turn loses its reasoning block (Qwen3's template drops it), a final one would keep it
    assert trained == ["Lily lost it.<|im_end|>\n", "She found it again.<|im_end|>\n"]
    for message in conversation:
        if message["role"] != "assistant":
            assert message["content"] in untrained
    assert untrained.count("<|im_start|>assistant\n") == 2


def test_qwen3_final_turn_trains_the_empty_think_block(qwen3):
    text, spans = assistant_char_spans(qwen3, CONVERSATIONS[0])
    assert [text[s:e] for s, e in spans] == ["<think>\n\n</think>\n\nHello, how can I help?<|im_end|>\n"]


def test_a_token_across_the_span_start_is_trained_and_counted(qwen3):
    """Content starting with newlines merges with the header's "\\n" into one token."""
    conversation = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "\n\nb"},
                    {"role": "user", "content": "c"}]
    example = tokenize_chat(qwen3, conversation)
    assert example.straddled == 1
    first = example.train_mask.index(True)
    assert qwen3.decode([example.ids[first]]) == "\n\n\n"


@pytest.fixture(scope="module")
def chatml(tmp_path_factory):
    base = train_bpe_from_texts(["Once upon a time there was a cat named Max who found a key. " * 4], 320)
    tok, added = with_default_chat_template(base)
    assert added == [base.vocab_size, base.vocab_size + 1] and tok.vocab_size == base.vocab_size + 2
    assert tok.chat_template == DEFAULT_CHAT_TEMPLATE and tok.eos_token == "<|im_end|>"
    directory = tmp_path_factory.mktemp("chatml-tok")
    tok.save(directory)
    return tok, directory


@pytest.mark.parametrize("conversation", CONVERSATIONS, ids=["single", "multi_turn", "thinking_then_user"])
def test_default_template_mask_equals_transformers_assistant_mask(chatml, conversation):
    from transformers import AutoTokenizer

    tok, directory = chatml
    hf = AutoTokenizer.from_pretrained(str(directory))
    out = hf.apply_chat_template(conversation, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    example = tokenize_chat(tok, conversation)
    assert example.ids == list(out["input_ids"])
    assert example.train_mask == [bool(m) for m in out["assistant_masks"]]
    header = [tok.special_tokens["<|im_start|>"]] + tok.encode("assistant\n")
    assert example.train_mask == chatml_span_rule(example.ids, header, tok.special_tokens["<|im_end|>"],
                                                  tok.encode("\n")[0])


def test_default_template_without_markers_gives_the_same_spans(chatml):
    """The rendered-turns path (no markers) agrees with the generation markers on the same template."""
    tok, _ = chatml
    plain = type(tok)(tok.vocab, tok.merges, tok.special_tokens, pattern=tok.pattern,
                      chat_template=DEFAULT_CHAT_TEMPLATE.replace("{%- generation %}", "").replace("{%- endgeneration %}", ""),
                      eos_token=tok.eos_token)
    for conversation in CONVERSATIONS:
        assert assistant_char_spans(plain, conversation) == assistant_char_spans(tok, conversation)
        assert tokenize_chat(plain, conversation).train_mask == tokenize_chat(tok, conversation).train_mask


def test_no_assistant_token_is_an_error_naming_the_example(chatml):
    tok, _ = chatml
    silent = type(tok)(tok.vocab, tok.merges, tok.special_tokens, pattern=tok.pattern, eos_token=tok.eos_token,
                       chat_template="{% for m in messages %}{% if m.role != 'assistant' %}{{ m.content }}{% endif %}"
                                     "{% endfor %}")
    good = CONVERSATIONS[0]
    with pytest.raises(DataError, match="example 0 has no assistant token"):
        tokenize_conversations(silent, [good])
    with pytest.raises(DataError, match="example 1 has no assistant token"):
        tokenize_conversations(tok, [good, [{"role": "user", "content": "only a question"}]])


def test_a_tokenizer_without_a_template_is_refused():
    tok = train_bpe_from_texts(["hello there"], 260)
    with pytest.raises(TokenizerError, match="with_default_chat_template"):
        tokenize_chat(tok, CONVERSATIONS[0])


def _runs(ids, mask, value):
    """Maximal runs of ids whose mask equals `value`."""
    runs, current = [], []
    for i, m in zip(ids, mask):
        if m == value:
            current.append(i)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return runs


def test_default_template_reuses_chatml_tokens_the_tokenizer_has():
    base = train_bpe_from_texts(["hello there"], 260)
    with_end, added = base.with_special_tokens(["<|im_end|>"])
    assert added == [base.vocab_size] and base.special_tokens.get("<|im_end|>") is None  # the original is unchanged
    tok, added = with_default_chat_template(with_end)
    assert added == [base.vocab_size + 1] and tok.special_tokens["<|im_end|>"] == base.vocab_size
    ids = tok.encode("<|im_start|>hi<|im_end|>")
    assert (ids[0], ids[-1]) == (base.vocab_size + 1, base.vocab_size)
    same, none_added = with_default_chat_template(tok)
    assert same is tok and none_added == []
