"""llama.cpp (through llama-cpp-python) as the GGUF tests and benchmarks/bench_gguf.py run it: loaded with an
F32 KV cache and every position's logits, last-position logits, and a greedy continuation."""

from __future__ import annotations

import numpy as np


def load_llama_cpp(llama_cpp, path, n_ctx: int = 128, threads: int = 2):
    """llama.cpp with an F32 KV cache and every position's logits kept, on `threads` threads, without its extra CPU
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
        return llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                               logits_all=True, verbose=False, type_k=0, type_v=0, flash_attn=False)  # 0: F32
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
