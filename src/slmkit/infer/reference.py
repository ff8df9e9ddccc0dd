"""`generate_reference`: the plain generation loop — `Decoder.forward` with a `KVCache`, one token at a
time, each picked by infer's `Sampler`. No engine, no batching, no specialised step: what the samples
shown during training use (any model, any device, any dtype), and what the tests hold the fast engine to.

    ids = generate_reference(model, tokenizer.encode("Once upon a time"), SamplingParams(temperature=0.8,
                             top_k=50, max_new_tokens=100, seed=1), eos_ids={tokenizer.eos_id})
"""

from __future__ import annotations

import torch

from slmkit.infer.sampling import Sampler, SamplingParams
from slmkit.model.kv_cache import KVCache


@torch.no_grad()
def generate_reference(model, prompt_ids: list[int], params: SamplingParams, eos_ids=()) -> list[int]:
    """The ids generated after `prompt_ids` (EOS not included). The prompt keeps its last
    max_seq_len - 1 tokens, and generation stops at EOS, max_new_tokens or the end of the context.
    The sampler has its own seeded random generator, so the global torch RNG is never touched."""
    if not prompt_ids:
        raise ValueError("the prompt is empty; give at least one token")
    device = next(model.parameters()).device
    context = model.config.max_seq_len
    prompt = list(prompt_ids)[-(context - 1):]
    total = min(len(prompt) + params.max_new_tokens, context)
    cache = KVCache.for_model(model, rows=1, max_len=total)
    sampler = Sampler(params)
    stop = set() if params.ignore_eos else set(eos_ids)
    stop.update(params.stop_token_ids)
    logits = model(torch.tensor([prompt], device=device), cache=cache, last_logits_only=True).logits
    generated: list[int] = []
    while len(prompt) + len(generated) < total:
        token = sampler.sample(logits[0, -1].float().cpu(), prompt, generated)
        if token in stop:
            break
        generated.append(token)
        if len(prompt) + len(generated) < total:
            logits = model(torch.tensor([[token]], device=device), cache=cache).logits
    return generated
