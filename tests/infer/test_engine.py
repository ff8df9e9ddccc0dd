"""The generation engine against the model's own full forward, one-by-one runs, and transformers."""

import gc
import sys
import subprocess
import json
import os
import tracemalloc
from pathlib import Path

import pytest
import torch
import transformers

from slmkit.infer import BatchGenerator, ContextLengthError, Generator, ModelRunner, SamplingParams
from slmkit.interop.hf_export import export_hf

from .conftest import random_model

FAMILIES = {
    "qwen3": {},
    "llama": dict(qk_norm=False, tie_embeddings=True),
    "gpt2": dict(norm="layernorm", mlp="gelu", positions="learned", n_kv_heads=4, head_dim=None, qk_norm=False,
                 attn_qkv_bias=True, attn_out_bias=True, mlp_bias=True, tie_embeddings=True),
    "moe": dict(n_experts=4, moe_top_k=2, moe_d_ff=16),
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_incremental_decoding_matches_full_forward_at_every_step(family):
    model = random_model(**FAMILIES[family])
    runner = ModelRunner(model)
    ids = torch.randint(0, 300, (2, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(ids).logits
    cache = runner.new_cache(2, 32)
    torch.testing.assert_close(runner.forward(ids[:, :8], cache, all_logits=True), full[:, :8])
    for t in range(8, 20):  # one token at a time
        torch.testing.assert_close(runner.forward(ids[:, t:t + 1], cache), full[:, t], rtol=1e-4, atol=1e-5)
    # rows of different lengths (one row rolled back) still give each row its own positions
    cache.set_length(1, 10)
    out = runner.forward(ids[:, 10:11], cache)
    torch.testing.assert_close(out[1], full[1, 10], rtol=1e-4, atol=1e-5)


def test_batched_generation_equals_one_by_one():
    gen = Generator(random_model(), eos_ids=set())
    g = torch.Generator().manual_seed(2)
    prompts = [torch.randint(0, 300, (n,), generator=g).tolist() for n in (3, 11, 6, 1, 17)]
    batched = gen.generate(prompts, max_new_tokens=12, temperature=0)
    for prompt, out in zip(prompts, batched):
        assert gen.generate(prompt, max_new_tokens=12, temperature=0).token_ids == out.token_ids
    sampled = gen.generate(prompts, max_new_tokens=8, temperature=1.0, top_k=20, seed=5)
    for i, (prompt, out) in enumerate(zip(prompts, sampled)):  # per-prompt seeds: seed + index
        assert gen.generate(prompt, max_new_tokens=8, temperature=1.0, top_k=20, seed=5 + i).token_ids == out.token_ids


def test_continuous_batching_requests_join_and_leave():
    model = random_model()
    engine = BatchGenerator(model, max_batch=2, eos_ids=set())
    reference = Generator(model, eos_ids=set())
    prompts = {"a": [1, 2, 3], "b": [4, 5, 6, 7, 8], "c": [9], "d": [10, 11]}
    lengths = {"a": 3, "b": 9, "c": 5, "d": 2}
    for rid in ("a", "b"):
        engine.add(prompts[rid], SamplingParams(temperature=0, max_new_tokens=lengths[rid]), request_id=rid)
    tokens = {rid: [] for rid in prompts}
    steps = 0
    while engine.has_work():
        if steps == 2:  # join mid-flight, while a and b are decoding
            for rid in ("c", "d"):
                engine.add(prompts[rid], SamplingParams(temperature=0, max_new_tokens=lengths[rid]), request_id=rid)
        for event in engine.step():
            tokens[event.request_id].append(event.token_id)
        assert len(engine.running) <= 2
        steps += 1
    for rid, prompt in prompts.items():
        assert tokens[rid] == reference.generate(prompt, max_new_tokens=lengths[rid], temperature=0).token_ids


def test_greedy_tokens_equal_transformers_generate(tmp_path):
    model = random_model(tie_embeddings=True)
    export_hf(model, tmp_path / "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    prompt = torch.randint(0, 300, (1, 9), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = hf.generate(prompt, max_new_tokens=30, min_new_tokens=30, do_sample=False, pad_token_id=0,
                               eos_token_id=None)[0, 9:].tolist()
    assert Generator(model, eos_ids=set()).generate(prompt[0].tolist(), max_new_tokens=30,
                                                     temperature=0).token_ids == expected


def test_eos_stop_strings_and_streaming_deltas(tokenizer):
    model = random_model(vocab_size=tokenizer.vocab_size)
    gen = Generator(model, tokenizer)
    free = gen.generate("Once upon", max_new_tokens=20, temperature=0, ignore_eos=True)
    assert free.finish_reason == "length" and len(free.token_ids) == 20
    # the greedy continuation's 3rd token becomes EOS: generation must stop before it
    gen.eos_ids = {free.token_ids[2]}
    gen._engine = None
    stopped = gen.generate("Once upon", max_new_tokens=20, temperature=0)
    assert stopped.finish_reason == "stop" and stopped.token_ids == free.token_ids[:2]
    gen.eos_ids = set()
    gen._engine = None
    text = free.text
    stop = text[len(text) // 2: len(text) // 2 + 2]
    if stop.strip():
        cut = gen.generate("Once upon", max_new_tokens=20, temperature=0, stop=[stop])
        assert cut.finish_reason == "stop" and cut.text == text[: text.index(stop)]
    deltas = list(gen.stream("Once upon", max_new_tokens=20, temperature=0, ignore_eos=True))
    assert "".join(deltas) == text


def test_prompt_longer_than_the_context_is_a_clear_error():
    gen = Generator(random_model(), eos_ids=set())
    with pytest.raises(ContextLengthError, match="context window is 64 tokens"):
        gen.generate(list(range(64)), max_new_tokens=4)
    out = gen.generate(list(range(60)), max_new_tokens=50, temperature=0)  # runs into the window's end
    assert out.finish_reason == "length" and len(out.token_ids) == 4


def _rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _live_tensors() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if issubclass(type(o), torch.Tensor))


def _growth(gen, rounds: int, leak: list | None = None) -> tuple[int, int, int]:
    """(live tensors, Python heap bytes, resident bytes) gained over `rounds` generations after warm-up.

    `leak`, when given, gets what a leaking engine would keep from each generation (the result and a
    cache-sized tensor): the control that shows the three measures catch a leak of that size."""
    def one(i):
        out = gen.generate([[1, 2, 3], [4, 5]], max_new_tokens=12, temperature=0.9, top_p=0.9, seed=i)
        single = gen.generate([1, 2, 3], max_new_tokens=12, temperature=0, ignore_eos=True)
        if leak is not None:
            leak.append((out, single, torch.ones(64 * 2**10)))  # 256 KiB, like a stray KV cache

    for i in range(5):
        one(i)
    tensors, rss = _live_tensors(), _rss_bytes()
    tracemalloc.start()
    try:
        heap = tracemalloc.get_traced_memory()[0]
        for i in range(rounds):
            one(i)
        gc.collect()
        heap = tracemalloc.get_traced_memory()[0] - heap
    finally:
        tracemalloc.stop()
    return _live_tensors() - tensors, heap, _rss_bytes() - rss


def _memory_growth() -> tuple[tuple, tuple]:
    """(growth, growth with a planted leak) over 40 generations; see the test below."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rounds = 40
        clean = _growth(Generator(random_model(), eos_ids=set()), rounds)
        leaked = _growth(Generator(random_model(), eos_ids=set()), rounds, [])
    finally:
        torch.set_num_threads(threads)
    return clean, leaked


def test_no_memory_growth_over_many_generations():
    """Repeated generations (batched, sampled; single, greedy) keep no tensors, Python objects or memory.

    Measured in a fresh process: in the suite's process, heap space freed by earlier tests (glibc serves
    256 KiB blocks from it after big frees) hides a leak from RSS and fragments it into false growth.
    One torch thread: tiny ops gain nothing from two, and on a loaded machine each parallel region can
    wait a scheduler slice for the second thread (this test took ~100 s under load with two)."""
    code = "import json; from tests.infer.test_engine import _memory_growth; print(json.dumps(_memory_growth()))"
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    (tensors, heap, rss), leaked = json.loads(done.stdout.strip().splitlines()[-1])
    rounds = 40
    assert tensors <= 0, f"{tensors} more live tensors after {rounds} generations"
    assert heap < 64 * 2**10, f"the Python heap grew by {heap / 2**10:.0f} KiB over {rounds} generations"
    assert rss < 4 * 2**20, f"resident memory grew by {rss / 2**20:.1f} MiB over {rounds} generations"
    # the planted leak (one result and 256 KiB per generation, 10 MiB in all) trips every check
    assert leaked[0] >= rounds and leaked[1] >= 64 * 2**10 and leaked[2] >= 4 * 2**20, leaked
