"""Speculative decoding (Leviathan et al. 2023; Chen et al. 2023) with a small draft model.

Each round the draft proposes k tokens one at a time; the target scores all of them in ONE forward
over k+1 positions. Draft token d_i (drawn from the draft's distribution q_i) is accepted with
probability min(1, p_i(d_i) / q_i(d_i)); at the first rejection a token is drawn from the residual
norm(max(0, p_i - q_i)), and when all k are accepted a bonus token is drawn from p_{k+1}. The output
then has exactly the target's (processed) distribution. Under greedy decoding p and q are one-hot, so
the rule reduces to "keep the draft tokens while they equal the target's argmax" and the output is
identical to the target decoding alone. Rejected tokens are dropped from both caches by lowering the
row lengths (`KVCache.set_length`), no copying. Batch size 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from slmkit.errors import SlmError
from slmkit.infer.engine import ContextLengthError, eos_ids_for
from slmkit.infer.generator import make_params
from slmkit.infer.runner import ModelRunner
from slmkit.infer.sampling import Sampler, SamplingParams
from slmkit.infer.text import TextStream


def accept_draft(p: torch.Tensor, q: torch.Tensor, draft: list[int], sampler: Sampler) -> list[int]:
    """The accept/reject rule. p: target probs [k+1, vocab]; q: draft probs [k, vocab]; draft: k ids.

    Returns the accepted draft prefix followed by one more token (the correction or the bonus).
    """
    out: list[int] = []
    for i, d in enumerate(draft):
        if sampler.params.greedy:
            best = int(p[i].argmax())
            if best != d:
                return out + [best]
        elif sampler.uniform() * float(q[i, d]) >= float(p[i, d]):  # reject with prob 1 - min(1, p/q)
            residual = (p[i] - q[i]).clamp(min=0)
            total = float(residual.sum())
            return out + [sampler.draw(residual / total if total > 0 else p[i])]
        out.append(d)
    return out + [sampler.draw(p[len(draft)])]


@dataclass
class SpeculativeResult:
    token_ids: list[int]
    text: str
    finish_reason: str
    proposed: int  # draft tokens proposed
    accepted: int  # draft tokens accepted
    target_forwards: int

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.proposed if self.proposed else 0.0


class SpeculativeGenerator:
    def __init__(self, target, draft, tokenizer=None, k: int = 4, eos_ids: set[int] | None = None):
        if target.config.vocab_size != draft.config.vocab_size:
            raise SlmError(f"draft vocabulary ({draft.config.vocab_size}) differs from the target's "
                           f"({target.config.vocab_size}); the draft must share the target's tokenizer")
        if k < 1:
            raise SlmError(f"k (draft tokens per round) must be >= 1, got {k}")
        self.target, self.draft = ModelRunner(target), ModelRunner(draft)
        self.tokenizer = tokenizer
        self.k = k
        self.eos_ids = set(eos_ids) if eos_ids is not None else eos_ids_for(tokenizer)
        self.max_len = min(target.config.max_seq_len, draft.config.max_seq_len)
        self.target_cache = self.target.new_cache(1, self.max_len)
        self.draft_cache = self.draft.new_cache(1, self.max_len)

    def generate(self, prompt_ids: list[int], params: SamplingParams | None = None, **kwargs) -> SpeculativeResult:
        params = make_params(params, **kwargs)
        prompt_ids = list(prompt_ids)
        if not prompt_ids or len(prompt_ids) >= self.max_len:
            raise ContextLengthError(f"the prompt has {len(prompt_ids)} tokens; it must have between 1 and "
                                     f"{self.max_len - 1} (the context window less one new token)")
        sampler = Sampler(params)
        stream = TextStream(self.tokenizer, params.stop)
        tc, dc = self.target_cache, self.draft_cache
        tc.set_length(0, 0)
        dc.set_length(0, 0)
        # Invariant at each round: the target cache holds seq[:-1]; the draft cache holds seq[:dc.lengths[0]].
        logits = self.target.forward(torch.tensor([prompt_ids]), tc)[0]
        seq = prompt_ids + [sampler.sample(logits, prompt_ids, [])]
        generated = [seq[-1]]
        text, proposed, accepted, forwards, reason = "", 0, 0, 1, None
        tokens_to_check = [seq[-1]]
        while True:
            for token in tokens_to_check:  # apply the stop rules to tokens in order
                if token in self.eos_ids and not params.ignore_eos or token in params.stop_token_ids:
                    generated = generated[:generated.index(token, len(generated) - len(tokens_to_check))]
                    reason = "stop"
                    break
                text += stream.push(token)
                if stream.stopped:
                    reason = "stop"
                    break
            if reason is None and len(generated) >= params.max_new_tokens:
                generated, reason = generated[:params.max_new_tokens], "length"
            if reason is None and len(seq) >= self.max_len:
                reason = "length"
            if reason:
                break
            k = min(self.k, params.max_new_tokens - len(generated), self.max_len - len(seq))
            n_before = len(generated)
            if k <= 0:
                logits = self.target.decode(seq[-1], tc)[0]
                forwards += 1
                new = [sampler.sample(logits, prompt_ids, generated)]
            else:
                new, n_ok = self._round(seq, generated, prompt_ids, sampler, k)
                forwards += 1
                proposed += k
                accepted += n_ok
            seq += new
            generated += new
            tokens_to_check = generated[n_before:]
        text += stream.finish()
        return SpeculativeResult(generated, text, reason, proposed, accepted, forwards)

    def _round(self, seq, generated, prompt_ids, sampler, k):
        tc, dc = self.target_cache, self.draft_cache
        pending = seq[dc.lengths[0]:]
        logits = self.draft.forward(torch.tensor([pending]), dc)[0]
        drafts, q = [], []
        history = list(generated)
        for i in range(k):
            probs = sampler.distribution(logits, prompt_ids, history)
            d = sampler.draw(probs)
            drafts.append(d)
            q.append(probs)
            history.append(d)
            if i < k - 1:
                logits = self.draft.decode(d, dc)[0]
        start = tc.lengths[0]
        all_logits = self.target.forward(torch.tensor([[seq[-1]] + drafts]), tc, all_logits=True)[0]
        p = torch.stack([sampler.distribution(all_logits[i], prompt_ids, generated + drafts[:i])
                         for i in range(k + 1)])
        new = accept_draft(p, torch.stack(q), drafts, sampler)
        n_ok = len(new) - 1
        tc.set_length(0, start + 1 + n_ok)  # keeps seq[-1] and the accepted drafts
        dc.set_length(0, min(dc.lengths[0], len(seq) + n_ok))
        return new, n_ok
