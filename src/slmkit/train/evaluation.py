"""Validation during training: loss, perplexity and bits per byte of the validation documents, and samples.

The numbers are `slmkit.eval.likelihood`'s (its docstring defines them: each document alone, rolling windows,
bytes), the same `slm eval` reports, summed over ranks here.
Sampling runs with its own seeded generator, so evaluating never disturbs the training RNG.
"""

from __future__ import annotations

import contextlib

import torch

from slmkit.eval.likelihood import LikelihoodTotals, score_batches
from slmkit.infer.reference import generate_reference
from slmkit.infer.sampling import SamplingParams


def limit_windows(batches, max_rows: int | None):
    """Keep the first `max_rows` rows (of seq_len positions, packed with whole-document windows) of the split,
    counted over all ranks, so any number of processes evaluates the same tokens."""
    if max_rows is not None:
        batches.my_rows = batches.my_rows[batches.my_rows < max_rows]
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
           device, seed: int = 1234) -> list[str]:
    """Continue each prompt with infer's reference loop (Decoder.forward with a KV cache, infer's
    sampler; greedy when temperature == 0); returns prompt + continuation for each prompt. Prompt i
    samples with seed + i from its own generator, so sampling never disturbs the training RNG."""
    was_training = model.training
    model.eval()
    eos = getattr(tokenizer, "eos_id", None)
    texts = []
    with _few_threads_for_small_cpu_model(model, device):
        for i, prompt in enumerate(prompts):
            ids = tokenizer.encode(prompt) or [eos if eos is not None else 0]
            params = SamplingParams(max_new_tokens=max_new_tokens, temperature=max(temperature, 0.0),
                                    top_k=top_k or 0, seed=seed + i)
            texts.append(tokenizer.decode(ids + generate_reference(model, ids, params, eos_ids={eos} - {None})))
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
