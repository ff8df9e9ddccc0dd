"""Validation during training: loss, perplexity and bits per byte over the validation windows, and samples.

Bits per byte is tokenizer-independent: total nats over the validation targets divided by ln 2 and by
the UTF-8 bytes those targets spell (special tokens such as end-of-text count as 0 bytes), so runs with
different vocabularies compare. Sampling is a plain loop (no KV cache: the full `slmkit.infer` engine
lives elsewhere) with its own seeded generator, so evaluating never disturbs the training RNG.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F

from slmkit.model.loss import IGNORE_INDEX


def limit_windows(batches, max_windows: int | None):
    """Keep the first `max_windows` windows of the split (counted over all ranks, so any number of
    processes evaluates the same tokens)."""
    if max_windows is not None:
        batches.my_windows = batches.my_windows[batches.my_windows < max_windows]
    return batches


def token_byte_lengths(tokenizer, vocab_size: int) -> torch.Tensor:
    """[vocab_size] int64: UTF-8 bytes each id decodes to (0 for special tokens and unused ids)."""
    lengths = torch.zeros(vocab_size, dtype=torch.int64)
    specials = set(getattr(tokenizer, "special_tokens", {}).values()) if tokenizer is not None else set()
    for i in range(min(vocab_size, tokenizer.vocab_size)):
        if i in specials:
            continue
        try:
            lengths[i] = len(tokenizer.id_to_bytes(i))
        except (KeyError, IndexError, ValueError):
            lengths[i] = 0
    return lengths


@torch.no_grad()
def evaluate(model, batches, device, autocast_ctx, byte_lengths: torch.Tensor | None, dist) -> dict:
    """Mean loss, perplexity and bits per byte over `batches` (EvalBatches); summed over ranks."""
    was_training = model.training
    model.eval()
    nats, tokens, nbytes = 0.0, 0, 0
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        with autocast_ctx():
            logits = model(x).logits
        nats += float(F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=IGNORE_INDEX,
                                      reduction="sum"))
        valid = y != IGNORE_INDEX
        tokens += int(valid.sum())
        if byte_lengths is not None:
            nbytes += int(byte_lengths.to(y.device)[y[valid]].sum())
    nats, tokens, nbytes = dist.all_reduce_sum([nats, tokens, nbytes], device)
    model.train(was_training)
    if tokens == 0:
        return {}
    loss = nats / tokens
    out = {"val_loss": loss, "val_ppl": math.exp(min(loss, 50.0)), "val_tokens": int(tokens)}
    if nbytes > 0:
        out["val_bpb"] = nats / math.log(2) / nbytes
    return out


@torch.no_grad()
def sample(model, tokenizer, prompts: list[str], max_new_tokens: int, temperature: float, top_k: int | None,
           device, max_seq_len: int, seed: int = 1234) -> list[str]:
    """Continue each prompt (greedy when temperature == 0) with a KV cache; returns prompt + continuation."""
    was_training = model.training
    model.eval()
    generator = torch.Generator(device="cpu").manual_seed(seed)
    eos = getattr(tokenizer, "eos_id", None)
    with _few_threads_for_small_cpu_model(model, device):
        texts = _sample(model, tokenizer, prompts, max_new_tokens, temperature, top_k, device, max_seq_len,
                        generator, eos)
    model.train(was_training)
    return texts


@contextlib.contextmanager
def _few_threads_for_small_cpu_model(model, device):
    """One decode step of a small model is too little work to split over threads: they only add
    synchronisation, and on a busy machine spinning OpenMP threads made 120 tokens take 16 s instead of
    0.4 s (2 shared cores). So small models decode on one CPU thread."""
    small = sum(p.numel() for p in model.parameters()) < 50_000_000
    if torch.device(device).type != "cpu" or not small or torch.get_num_threads() == 1:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _sample(model, tokenizer, prompts, max_new_tokens, temperature, top_k, device, max_seq_len, generator, eos):
    from slmkit.model.kv_cache import KVCache

    texts = []
    for prompt in prompts:
        ids = tokenizer.encode(prompt) or [eos if eos is not None else 0]
        ids = ids[-(max_seq_len - 1):]
        total = min(len(ids) + max_new_tokens, max_seq_len)
        cache = KVCache.for_model(model, batch_size=1, max_len=total)
        logits = model(torch.tensor([ids], device=device), cache=cache).logits[0, -1]
        while len(ids) < total:
            next_id = _choose(logits.float().cpu(), temperature, top_k, generator)
            if eos is not None and next_id == eos:
                break
            ids.append(next_id)
            if len(ids) < total:
                logits = model(torch.tensor([[next_id]], device=device), cache=cache).logits[0, -1]
        texts.append(tokenizer.decode(ids))
    return texts


def _choose(logits: torch.Tensor, temperature: float, top_k: int | None, generator: torch.Generator) -> int:
    if temperature <= 0:
        return int(logits.argmax())
    logits = logits / temperature
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return int(torch.multinomial(torch.softmax(logits, -1), 1, generator=generator))
