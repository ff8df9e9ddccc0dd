"""Reference tokenizers: tiktoken's gpt2 (offline, from the shared GPT-2 files) and HF tokenizers' Qwen3."""

import os
import shutil

import pytest

from slmkit.tokenizer import load_tokenizer
from tests.conftest import shared_path

# tiktoken caches downloads under the sha1 of their address; placing the files there works offline.
TIKTOKEN_CACHE_NAMES = {
    "vocab.bpe": "6d1cbeee0f20b3d9449abfede4726ed8212e3aee",
    "encoder.json": "6c7ea1a7e38e3a7f062df639a5b80947f075ffe6",
}
SPECIALS_GPT2 = ["<|endoftext|>"]


@pytest.fixture(scope="session")
def tiktoken_gpt2(tmp_path_factory):
    cache = tmp_path_factory.mktemp("tiktoken-cache")
    for name, key in TIKTOKEN_CACHE_NAMES.items():
        shutil.copy(shared_path("gpt2-tokenizer", name), cache / key)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
    import tiktoken

    enc = tiktoken.get_encoding("gpt2")
    assert enc.encode("Hello world, once upon a time.") == [15496, 995, 11, 1752, 2402, 257, 640, 13]
    return enc


@pytest.fixture(scope="session")
def gpt2_tokenizer():
    return load_tokenizer(shared_path("gpt2-tokenizer"))


@pytest.fixture(scope="session")
def qwen3_tokenizer():
    return load_tokenizer(shared_path("qwen3-tokenizer"))


@pytest.fixture(scope="session")
def qwen3_reference():
    import tokenizers

    return tokenizers.Tokenizer.from_file(str(shared_path("qwen3-tokenizer", "tokenizer.json")))
