"""Our encoder against the reference implementations: tiktoken (GPT-2) and HF tokenizers (Qwen3)."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import shared_path

TINYSTORIES_FILES = [
    "tinystories_train_head_2MiB.txt",
    "tinystories_validation_head_hf.txt",
    "tinystories_train_head_lowercased.txt",
]

# Characters that stress pre-tokenization and byte-level BPE: ASCII, accents, combining marks,
# CJK, emoji (with ZWJ and skin tones), other scripts, digits of several systems, odd whitespace.
TRICKY = (
    "aAzZ09 '\"sdmtllvere!?.,;:-_()[]{}<>|/\\@#$%^&*+=~`"
    "éèüñçÅøß"
    "\u0301\u0308\u0327\u200d\ufe0f"
    "中文字日本語한국어"
    "😀👍🏽👨‍👩‍👧🚀"
    "Ωπσжщяשלוםمرحباनमस्ते"
    "٣٤५६①½"
    " \t\n\r\u00a0\u3000\u2028\x0b\x0c"
)
texts = st.lists(
    st.one_of(
        st.text(alphabet=TRICKY, max_size=40),
        st.text(max_size=20),
        st.sampled_from(["<|endoftext|>", "  ", "\n\n", " 's", "'LL", "123456", "Once upon a time"]),
    ),
    max_size=8,
).map("".join)


@pytest.mark.parametrize("name", TINYSTORIES_FILES)
def test_gpt2_equals_tiktoken_on_tinystories(name, gpt2_tokenizer, tiktoken_gpt2):
    text = shared_path("tinystories", name).read_text(encoding="utf-8")
    assert gpt2_tokenizer.encode(text) == tiktoken_gpt2.encode(text, allowed_special="all")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts)
def test_gpt2_equals_tiktoken_on_generated_unicode(text, gpt2_tokenizer, tiktoken_gpt2):
    assert gpt2_tokenizer.encode(text) == tiktoken_gpt2.encode(text, allowed_special="all")
    assert gpt2_tokenizer.encode(text, allowed_special="none") == tiktoken_gpt2.encode_ordinary(text)


def test_gpt2_known_ids(gpt2_tokenizer):
    assert gpt2_tokenizer.encode("Hello world, once upon a time.") == [15496, 995, 11, 1752, 2402, 257, 640, 13]
    assert gpt2_tokenizer.eos_id == 50256
    assert gpt2_tokenizer.vocab_size == 50257


@pytest.mark.parametrize("name", TINYSTORIES_FILES[:2])
def test_qwen3_equals_hf_tokenizers_on_tinystories(name, qwen3_tokenizer, qwen3_reference):
    text = shared_path("tinystories", name).read_text(encoding="utf-8")
    assert qwen3_tokenizer.encode(text) == qwen3_reference.encode(text).ids


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts)
def test_qwen3_equals_hf_tokenizers_on_generated_unicode(text, qwen3_tokenizer, qwen3_reference):
    assert qwen3_tokenizer.encode(text) == qwen3_reference.encode(text).ids


def test_qwen3_special_tokens_and_chat_template(qwen3_tokenizer, qwen3_reference):
    text = "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nHello!<|im_end|>"
    assert qwen3_tokenizer.encode(text) == qwen3_reference.encode(text).ids
    assert qwen3_tokenizer.special_tokens["<|endoftext|>"] == 151643
    assert qwen3_tokenizer.vocab_size == 151669
    assert qwen3_tokenizer.chat_template and "im_start" in qwen3_tokenizer.chat_template


def test_qwen3_normalises_to_nfc(qwen3_tokenizer, qwen3_reference):
    decomposed = "Cafe\u0301 and re\u0301sume\u0301"  # NFD; Qwen's normaliser composes it first
    assert qwen3_tokenizer.encode(decomposed) == qwen3_reference.encode(decomposed).ids
    assert qwen3_tokenizer.encode(decomposed) == qwen3_tokenizer.encode("Café and résumé")
