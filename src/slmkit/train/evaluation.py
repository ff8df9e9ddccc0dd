"""Validation during training: loss, perplexity and bits per byte over the validation windows, and samples.

The numbers are `slmkit.eval.likelihood`'s (its docstring defines them: windows, end-of-text, bytes), summed
over ranks here. Sampling runs with its own seeded generator, so evaluating never disturbs the training RNG.
"""

from __future__ import annotations

import contextlib

import torch

from slmkit.eval.likelihood import LikelihoodTotals, score_batches


def limit_windows(batches, max_windows: int | None):
    """Keep the first `max_windows` windows of the split (counted over all ranks, so any number of
    processes evaluates the same tokens)."""
    if max_windows is not None:
        batches.my_windows = batches.my_windows[batches.my_windows < max_windows]
    return batches


def evaluate(model, batches, device, autocast_ctx, byte_lengths: torch.Tensor | None, dist) -> dict:
    """{"val_loss", "val_ppl", "val_tokens", "val_bpb" (when bytes are known)} over `batches` (EvalBatches),
    summed over ranks; {} when there is nothing to score."""
    mine = score_batches(model, batches, byte_lengths, device, autocast_ctx)
    nats, tokens, nbytes = dist.all_reduce_sum([mine.nats, mine.tokens, mine.bytes], device)
    totals = LikelihoodTotals(nats, int(tokens), int(nbytes))
    if totals.tokens == 0:
        return {}
    out = {"val_loss": totals.loss, "val_ppl": totals.perplexity, "val_tokens": totals.tokens}
    if totals.bits_per_byte is not None:
        out["val_bpb"] = totals.bits_per_byte
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
