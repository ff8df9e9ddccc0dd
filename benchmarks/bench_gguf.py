"""GGUF: decode speed of `slm generate` against llama.cpp itself on the same weights.

    .venv/bin/python benchmarks/bench_gguf.py          # writes benchmarks/results/gguf.md|json

The honest peer for CPU decoding is C++: the GUIDE's 4.2M config (`tiny`) and a ~43M one (bench_generate's
shape), random weights (decode cost does not depend on them; init_std 0.1 so greedy choices are clear),
a 4096-id tokenizer trained on TinyStories;
each exported with `export_gguf` (F32, and Q8_0 beside our int8) and run by llama.cpp through
llama-cpp-python (`Llama.eval`, one token at a time, F32 KV cache) and by slmkit's Generator (batch 1,
greedy, KV cache; int8 = `slm quantize --method int8`), both on the same number of threads, alternating,
median of 3. Tokens/s counts the 128 generated tokens after a 16-token prompt (prefill included on both
sides). The greedy tokens of the two are compared too (F32: they should agree).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, SHARED_DATA, ab_median, write_results  # noqa: E402

sys.path.insert(0, str(REPO))
from tests.interop.llama_cpp_runner import llama_cpp_greedy, load_llama_cpp  # noqa: E402

from slmkit.infer import Generator, SamplingParams  # noqa: E402
from slmkit.interop.gguf_file import export_gguf  # noqa: E402
from slmkit.model import Decoder, preset  # noqa: E402
from slmkit.quant import quantize_model  # noqa: E402
from slmkit.tokenizer import train_bpe_from_texts  # noqa: E402

THREADS = int(os.environ.get("BENCH_THREADS", str(torch.get_num_threads())))
NEW_TOKENS = 128
PROMPT_TOKENS = 16
TMP = Path(tempfile.mkdtemp(prefix="slmkit-bench-gguf-"))
SHAPES = {"4.2M": dict(), "43M": dict(d_model=512, n_layers=13, n_heads=8, n_kv_heads=4, d_ff=1536)}


def tokenizer():
    text = (SHARED_DATA / "tinystories" / "tinystories_train_head_2MiB.txt").read_text(encoding="utf-8")
    return train_bpe_from_texts(text[:400_000].split("<|endoftext|>"), 4096)


def llama_cpp_decode(path: Path, prompt: list[int]):
    import llama_cpp

    llm = load_llama_cpp(llama_cpp, path, n_ctx=PROMPT_TOKENS + NEW_TOKENS + 8, threads=THREADS)
    return lambda: llama_cpp_greedy(llm, prompt, NEW_TOKENS)


def slmkit_decode(model, tok, prompt: list[int]):
    generator = Generator(model, tok, eos_ids=set())
    params = SamplingParams(temperature=0.0, max_new_tokens=NEW_TOKENS)
    return lambda: generator.generate(prompt, params).token_ids


def race(label: str, model, tok, gguf_path: Path, prompt: list[int], params: int) -> dict:
    ours, theirs = slmkit_decode(model, tok, prompt), llama_cpp_decode(gguf_path, prompt)
    same = ours() == theirs()  # also the warm-up
    t = ab_median({"slmkit": ours, "llama.cpp": theirs}, 3)
    return {"model": label, "params_m": round(params / 1e6, 1),
            "threads": THREADS, "slmkit tok/s": round(NEW_TOKENS / t["slmkit"], 1),
            "llama.cpp tok/s": round(NEW_TOKENS / t["llama.cpp"], 1),
            "llama.cpp / slmkit": round(t["slmkit"] / t["llama.cpp"], 2), "same greedy tokens": same}


def main() -> None:
    torch.set_num_threads(THREADS)
    tok = tokenizer()
    prompt = tok.encode("Once upon a time, there was a little girl named Lily. She")[:PROMPT_TOKENS]
    rows = []
    for name, shape in SHAPES.items():
        torch.manual_seed(0)
        # init_std 0.1: logits far enough from uniform that greedy tokens are not decided by rounding
        model = Decoder(preset("tiny", vocab_size=tok.vocab_size, init_std=0.1, **shape)).eval()
        params = sum(p.numel() for p in model.parameters())
        f32 = export_gguf(model, tok, TMP / f"{name}-f32.gguf")
        rows.append(race(f"{name} F32 (slmkit fp32)", model, tok, f32, prompt, params))
        q8 = export_gguf(model, tok, TMP / f"{name}-q8_0.gguf", quant="q8_0")
        quantize_model(model, "int8")
        rows.append(race(f"{name} Q8_0 (slmkit int8)", model, tok, q8, prompt, params))
    notes = [f"batch 1, greedy, {PROMPT_TOKENS}-token prompt + {NEW_TOKENS} new tokens, {THREADS} threads on both "
             "sides, median of 3 alternating runs; llama.cpp through llama-cpp-python 0.3.36 (built from source "
             "by `make test`), F32 KV cache, plain CPU buffers (its AMX / repacking buffers segfault on Q8_0 "
             "on this machine); 'same greedy tokens' compares the two outputs (the int8 and Q8_0 "
             "rows quantize differently, so they may part)",
             "goal (#15): slmkit within 2x of llama.cpp at ~40M parameters"]
    path = write_results("gguf", "GGUF: decode speed, slmkit vs llama.cpp on the same weights", rows, notes)
    print(path.read_text())


if __name__ == "__main__":
    main()
