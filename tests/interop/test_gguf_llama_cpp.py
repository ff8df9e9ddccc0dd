"""The real program reads our GGUF files: llama.cpp (through llama-cpp-python, built from source by `make test`)
tokenizes as we do id for id, continues greedily with our 64 tokens, and gives our last-position logits
(F32 tight, Q8_0 within a stated tolerance) for llama, qwen3, qwen3moe and gpt2; and llama.cpp's own
quantizer writes the same Q8_0 blocks we do."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slmkit.infer import Generator, SamplingParams
from slmkit.interop.gguf_file import export_gguf, import_gguf
from slmkit.tokenizer import train_bpe_from_texts
from tests.interop.test_gguf import FAMILIES, LLAMA3_ROPE, SAMPLES, tiny
from tests.serve.tiny_run import TEXTS

PROMPT = "Once upon a time there was a little cat"
GREEDY_TOKENS = 64
F32_TOLERANCE = 1e-3  # llama.cpp's F32 kernels sum in another order
Q8_TOLERANCE = 0.15  # llama.cpp also rounds the activations to 8 bits in Q8_0 dot products


@pytest.fixture(scope="module")
def llama_cpp():
    try:
        import llama_cpp
    except ImportError:
        pytest.fail("the GGUF tests run llama.cpp through llama-cpp-python, which is missing: run `make venv` "
                    "(it builds llama.cpp from source once, ~15 minutes on 2 cores) or "
                    "`pip install llama-cpp-python==0.3.36`")
    return llama_cpp


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe_from_texts(TEXTS, 400)


def load(llama_cpp, path):
    """llama.cpp with an F32 KV cache and every position's logits kept, on 2 threads, without its extra CPU
    buffer types: on this machine kind (a Xeon with AMX) llama.cpp's AMX / weight-repacking path segfaults
    in decode on any Q8_0 or Q4_0 model, llama-quantize's own output included (our Q8_0 tensors are
    byte-identical to llama-quantize's; tested), while the plain CPU path runs them."""
    module = llama_cpp.llama.llama_cpp
    defaults = module.llama_model_default_params

    def plain_buffers():
        params = defaults()
        params.use_extra_bufts = False
        return params

    module.llama_model_default_params = plain_buffers
    try:
        return llama_cpp.Llama(model_path=str(path), n_ctx=128, n_threads=2, logits_all=True, verbose=False,
                               type_k=0, type_v=0, flash_attn=False)  # type 0: GGML_TYPE_F32
    finally:
        module.llama_model_default_params = defaults


def llama_cpp_logits(llm, ids: list[int]) -> np.ndarray:
    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)


def llama_cpp_greedy(llm, ids: list[int], n: int) -> list[int]:
    llm.reset()
    llm.eval(ids)
    out = []
    for _ in range(n):
        token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        out.append(token)
        llm.eval([token])
    return out


def our_greedy(model, tokenizer, ids: list[int], n: int) -> list[int]:
    generator = Generator(model, tokenizer, eos_ids=set())  # no stop: 64 tokens on both sides
    return generator.generate(ids, SamplingParams(temperature=0.0, max_new_tokens=n)).token_ids


CASES = {**{family: (family, {}) for family in FAMILIES}, "llama-rope-llama3": ("llama", LLAMA3_ROPE)}


@pytest.mark.parametrize("case", CASES)
def test_llama_cpp_tokenizes_continues_and_scores_as_we_do(case, llama_cpp, tokenizer, tmp_path):
    family, overrides = CASES[case]
    model = tiny(tokenizer, family, init_std=0.2, **overrides)
    llm = load(llama_cpp, export_gguf(model, tokenizer, tmp_path / "m.gguf"))
    for text in SAMPLES:
        assert llm.tokenize(text.encode("utf-8"), add_bos=False, special=True) == tokenizer.encode(text), text
    ids = tokenizer.encode(PROMPT)
    with torch.no_grad():
        ours = model(torch.tensor([ids])).logits[0, -1].numpy()
    np.testing.assert_allclose(llama_cpp_logits(llm, ids), ours, atol=F32_TOLERANCE, rtol=F32_TOLERANCE)
    assert llama_cpp_greedy(llm, ids, GREEDY_TOKENS) == our_greedy(model, tokenizer, ids, GREEDY_TOKENS)


def test_our_q8_0_blocks_are_llama_quantizes(llama_cpp, tokenizer, tmp_path):
    import ctypes

    import gguf

    model = tiny(tokenizer, "llama", init_std=0.2)
    export_gguf(model, tokenizer, tmp_path / "f32.gguf")
    export_gguf(model, tokenizer, tmp_path / "ours.gguf", quant="q8_0")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = 7  # LLAMA_FTYPE_MOSTLY_Q8_0
    assert llama_cpp.llama_model_quantize(str(tmp_path / "f32.gguf").encode(), str(tmp_path / "theirs.gguf").encode(),
                                          ctypes.byref(params)) == 0
    ours = {t.name: t for t in gguf.GGUFReader(tmp_path / "ours.gguf").tensors}
    theirs = {t.name: t for t in gguf.GGUFReader(tmp_path / "theirs.gguf").tensors}
    assert set(ours) == set(theirs)
    for name, tensor in ours.items():
        assert tensor.tensor_type == theirs[name].tensor_type, name
        assert np.array_equal(np.asarray(tensor.data), np.asarray(theirs[name].data)), name


@pytest.mark.parametrize("family", ["llama", "qwen3"])
def test_llama_cpp_on_q8_0_is_close_to_our_import_of_it(family, llama_cpp, tokenizer, tmp_path):
    path = export_gguf(tiny(tokenizer, family, init_std=0.2), tokenizer, tmp_path / "m.gguf", quant="q8_0")
    ours, _, _ = import_gguf(path)  # the same dequantized weights llama.cpp multiplies with
    ids = tokenizer.encode(PROMPT)
    with torch.no_grad():
        expected = ours(torch.tensor([ids])).logits[0, -1].numpy()
    got = llama_cpp_logits(load(llama_cpp, path), ids)
    assert np.abs(got - expected).max() < Q8_TOLERANCE
    assert int(np.argmax(got)) == int(np.argmax(expected))
