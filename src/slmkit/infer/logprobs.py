"""Log-probabilities of tokens under the model: the raw distribution, before any sampling adjustment.

    entry = token_logprob(logits[vocab], token_id, k=5)             # one generated token
    entries = prompt_logprobs(logits[T, vocab], prompt_ids, k=1)    # tokens 1..T-1 of a prompt

Both are the model's float32 log-softmax over its whole vocabulary. Generated tokens are scored under the
distribution *before* penalties, temperature, top-k/top-p/min-p (what vLLM reports by default, "raw
logprobs"), so a score does not depend on how the token was sampled.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

CHUNK_ROWS = 512  # prompt positions turned into log-probs at once

@dataclass
class TokenLogprob:
    """One token's log-probability and the k most likely tokens at its position (most likely first)."""

    token_id: int
    logprob: float
    top: list[tuple[int, float]] = field(default_factory=list)  # [(token_id, logprob)] * k


def token_logprob(logits: torch.Tensor, token_id: int, k: int) -> TokenLogprob:
    """logits: [vocab] for the position that produced `token_id`."""
    return prompt_logprobs(logits[None], [0, token_id], k)[0]


def prompt_logprobs(logits: torch.Tensor, prompt_ids: list[int], k: int) -> list[TokenLogprob]:
    """logits: [T, vocab] from a forward over the T prompt tokens; one entry for each of tokens 1..T-1
    (logits[t] predicts token t+1; the first token has no context and so no entry)."""
    entries: list[TokenLogprob] = []
    for start in range(0, len(prompt_ids) - 1, CHUNK_ROWS):  # chunks: a long prompt's log-softmax is large
        targets = prompt_ids[start + 1:start + 1 + CHUNK_ROWS]
        logp = torch.log_softmax(logits[start:start + len(targets)].float(), dim=-1)
        chosen = logp.gather(-1, torch.tensor(targets, device=logp.device)[:, None])[:, 0].tolist()
        if k > 0:
            top_values, top_ids = logp.topk(min(k, logp.shape[-1]), dim=-1)
            tops = [list(zip(ids, values)) for ids, values in zip(top_ids.tolist(), top_values.tolist())]
        else:
            tops = [[] for _ in chosen]
        entries += [TokenLogprob(token, lp, top) for token, lp, top in zip(targets, chosen, tops)]
    return entries
