"""The real program reads our GGUF files: llama.cpp (through llama-cpp-python, built from source by `make test`)
tokenizes as we do id for id, continues greedily with our 64 tokens, and gives our last-position logits
(F32 tight, Q8_0 within a stated tolerance) for llama, qwen3, qwen3moe and gpt2; and llama.cpp's own
quantizer writes the same Q8_0 blocks we do."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slmkit.infer import Generator, SamplingParams
from slmkit.model import Decoder
from slmkit.interop.gguf_file import export_gguf, import_gguf
from slmkit.tokenizer import train_bpe_from_texts
from tests.interop.llama_cpp_runner import llama_cpp_greedy, llama_cpp_logits, load_llama_cpp
from tests.interop.test_gguf import FAMILIES, LLAMA3_ROPE, SAMPLES, YARN_ROPE, tiny
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
                    "(it builds llama.cpp from source once, 7-15 minutes on 2 cores) or "
                    "`pip install llama-cpp-python==0.3.36`")
    return llama_cpp


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe_from_texts(TEXTS, 400)


def our_greedy(model, tokenizer, ids: list[int], n: int) -> list[int]:
    generator = Generator(model, tokenizer, eos_ids=set())  # no stop: 64 tokens on both sides
    return generator.generate(ids, SamplingParams(temperature=0.0, max_new_tokens=n)).token_ids


CASES = {**{family: (family, {}) for family in FAMILIES}, "llama-rope-llama3": ("llama", LLAMA3_ROPE),
         "qwen3-rope-yarn": ("qwen3", YARN_ROPE)}


@pytest.mark.parametrize("case", CASES)
def test_llama_cpp_tokenizes_continues_and_scores_as_we_do(case, llama_cpp, tokenizer, tmp_path):
    family, overrides = CASES[case]
    model = tiny(tokenizer, family, init_std=0.2, **overrides)
    llm = load_llama_cpp(llama_cpp, export_gguf(model, tokenizer, tmp_path / "m.gguf"))
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
    got = llama_cpp_logits(load_llama_cpp(llama_cpp, path), ids)
    assert np.abs(got - expected).max() < Q8_TOLERANCE
    assert int(np.argmax(got)) == int(np.argmax(expected))


@pytest.fixture(scope="module")
def trained_demo(tinystories_train):
    """The demo recipe's shape (`tiny`: Qwen3-style, 4.2M parameters at 4096 ids; here a 1024-id BPE on real
    TinyStories) trained for 80 steps on that text: confident, peaked logits as a real run has."""
    from slmkit.model import preset

    text = tinystories_train.read_text(encoding="utf-8")[:300_000]
    stories = [s for s in text.split("<|endoftext|>") if s.strip()]
    tok = train_bpe_from_texts(stories, 1024)
    ids = torch.tensor([i for s in stories for i in tok.encode(s.strip()) + [tok.eos_id]])
    torch.manual_seed(0)
    model = Decoder(preset("tiny", vocab_size=tok.vocab_size, max_seq_len=256))
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    for step in range(80):
        starts = torch.randint(0, len(ids) - 129, (8,))
        batch = torch.stack([ids[s:s + 129] for s in starts])
        loss = torch.nn.functional.cross_entropy(model(batch[:, :-1]).logits.flatten(0, 1), batch[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 5.5  # it learned something (uniform: ln 1024 = 6.9)
    return model.eval(), tok, stories


@pytest.mark.parametrize("quant", ["f32", "q8_0"])
def test_llama_cpp_runs_the_trained_demo_model_as_we_do(quant, trained_demo, llama_cpp, tmp_path):
    model, tok, stories = trained_demo
    path = export_gguf(model, tok, tmp_path / "demo.gguf", quant=quant)
    llm = load_llama_cpp(llama_cpp, path)
    for story in stories[-5:]:  # whole stories, as they were tokenized for training
        assert llm.tokenize(story.encode("utf-8"), add_bos=False, special=True) == tok.encode(story)
    ids = tok.encode("Once upon a time, there was a little girl named Lily. She")
    reference = model if quant == "f32" else import_gguf(path)[0]
    with torch.no_grad():
        expected = reference(torch.tensor([ids])).logits[0, -1].numpy()
    got = llama_cpp_logits(llm, ids)
    assert np.abs(got - expected).max() < (F32_TOLERANCE * 10 if quant == "f32" else Q8_TOLERANCE)
    if quant == "f32":
        assert llama_cpp_greedy(llm, ids, GREEDY_TOKENS) == our_greedy(model, tok, ids, GREEDY_TOKENS)
