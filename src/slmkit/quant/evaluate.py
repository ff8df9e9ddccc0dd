"""Numbers `slm quantize` reports: perplexity on a token stream, decode speed, bytes on disk."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch


@torch.inference_mode()
def perplexity(model, ids: list[int], seq_len: int = 256) -> float:
    """exp(mean next-token cross-entropy) over `ids` cut into non-overlapping windows of seq_len."""
    seq_len = min(seq_len, model.config.max_seq_len)
    total, count = 0.0, 0
    for start in range(0, len(ids) - 1, seq_len):
        window = torch.tensor([ids[start:start + seq_len + 1]])
        if window.shape[1] < 2:
            break
        logits = model(window[:, :-1]).logits.float()
        loss = torch.nn.functional.cross_entropy(logits[0], window[0, 1:], reduction="sum")
        total += float(loss)
        count += window.shape[1] - 1
    return math.exp(total / max(count, 1))


def decode_speed(model, n_tokens: int = 64, prompt_len: int = 16, repeats: int = 3) -> float:
    """Greedy decode tokens/s at batch 1 through the generation engine (median of `repeats`)."""
    from slmkit.infer import Generator

    gen = Generator(model, eos_ids=set())
    prompt = list(range(1, prompt_len + 1))
    gen.generate(prompt, max_new_tokens=4, temperature=0)  # warm-up: kernels repack their weights
    speeds = []
    for _ in range(repeats):
        start = time.perf_counter()
        gen.generate(prompt, max_new_tokens=n_tokens, temperature=0, ignore_eos=True)
        speeds.append(n_tokens / (time.perf_counter() - start))
    return sorted(speeds)[len(speeds) // 2]


def directory_bytes(path: str | os.PathLike) -> int:
    return sum(f.stat().st_size for f in Path(path).glob("*.safetensors"))
