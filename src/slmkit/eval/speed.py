"""Decode speed: greedy tokens per second at batch 1 through the generation engine (`slm quantize` reports it
before and after quantizing)."""

from __future__ import annotations

import time

from slmkit.infer import Generator


def decode_speed(model, n_tokens: int = 64, prompt_len: int = 16, repeats: int = 3) -> float:
    """Tokens/s generating `n_tokens` after a `prompt_len`-token prompt, greedy, batch 1 (median of `repeats`)."""
    gen = Generator(model, eos_ids=set())
    prompt = list(range(1, prompt_len + 1))
    gen.generate(prompt, max_new_tokens=4, temperature=0)  # warm-up: kernels repack their weights
    speeds = []
    for _ in range(repeats):
        start = time.perf_counter()
        gen.generate(prompt, max_new_tokens=n_tokens, temperature=0, ignore_eos=True)
        speeds.append(n_tokens / (time.perf_counter() - start))
    return sorted(speeds)[len(speeds) // 2]
