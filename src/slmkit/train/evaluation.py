"""Validation during training: loss, perplexity and bits per byte over the validation windows, and samples.

Bits per byte is tokenizer-independent: total nats over the validation targets divided by ln 2 and by
the UTF-8 bytes those targets spell (special tokens such as end-of-text count as 0 bytes), so runs with
different vocabularies compare. Sampling is a plain loop (no KV cache: the full `slmkit.infer` engine
lives elsewhere) with its own seeded generator, so evaluating never disturbs the training RNG.
"""

from __future__ import annotations

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
    """Continue each prompt (greedy when temperature == 0); returns prompt + continuation texts."""
    was_training = model.training
    model.eval()
    generator = torch.Generator(device="cpu").manual_seed(seed)
    eos = getattr(tokenizer, "eos_id", None)
    texts = []
    for prompt in prompts:
        ids = tokenizer.encode(prompt)
        if not ids:
            ids = [eos] if eos is not None else [0]
        for _ in range(max_new_tokens):
            context = torch.tensor([ids[-max_seq_len:]], device=device)
            logits = model(context).logits[0, -1].float().cpu()
            if temperature <= 0:
                next_id = int(logits.argmax())
            else:
                logits = logits / temperature
                if top_k:
                    kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                next_id = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=generator))
            if eos is not None and next_id == eos:
                break
            ids.append(next_id)
        texts.append(tokenizer.decode(ids))
    model.train(was_training)
    return texts
