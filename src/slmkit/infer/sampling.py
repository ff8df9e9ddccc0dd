"""Sampling settings and composable logit processors.

A request's `SamplingParams` becomes a list of processors applied in this order (the order Hugging Face
`generate` uses): repetition penalty, presence/frequency penalties, temperature, top-k, top-p, min-p.
The request's own `logits_processors` (e.g. a grammar's token mask) run before all of them, so
truncation only ever chooses among the tokens they allow.
Each processor maps float32 logits [vocab] (one row) to new logits; removed tokens get -inf.

    params = SamplingParams(temperature=0.8, top_p=0.9, seed=1)
    processors = build_processors(params)
    logits = apply_processors(processors, logits, prompt_ids, generated_ids)
    probs = torch.softmax(logits, -1)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from slmkit.errors import SlmError


class SamplingError(SlmError, ValueError):
    """A sampling setting is out of range."""


@dataclass
class SamplingParams:
    max_new_tokens: int = 128
    temperature: float = 1.0  # 0 -> greedy
    top_k: int = 0  # 0 -> off
    top_p: float = 1.0  # 1 -> off
    min_p: float = 0.0  # 0 -> off
    repetition_penalty: float = 1.0  # 1 -> off (CTRL / HF: divide positive logits, multiply negative)
    presence_penalty: float = 0.0  # OpenAI: subtract once for every token already generated
    frequency_penalty: float = 0.0  # OpenAI: subtract per occurrence in the generated text
    seed: int | None = None
    stop: list[str] = field(default_factory=list)  # stop strings (not included in the output)
    stop_token_ids: list[int] = field(default_factory=list)  # in addition to the model's EOS
    ignore_eos: bool = False
    # Log-probs to report (infer/logprobs.py): None -> none; k -> each token's own plus the k most likely.
    logprobs: int | None = None  # for each generated token
    prompt_logprobs: int | None = None  # for each prompt token after the first (a full forward over the prompt)
    # (logits [vocab], prompt_ids, generated_ids) -> logits, applied first; must not keep per-call state
    # (n choices of one request share them)
    logits_processors: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def validate(self) -> None:
        def bad(name, value, rule):
            raise SamplingError(f"{name} must be {rule}, got {value!r}")

        scoring_only = self.max_new_tokens == 0 and self.prompt_logprobs is not None  # score the prompt, no tokens
        if not isinstance(self.max_new_tokens, int) or (self.max_new_tokens < 1 and not scoring_only):
            bad("max_new_tokens", self.max_new_tokens, "a positive integer (0 only with prompt_logprobs)")
        for name in ("logprobs", "prompt_logprobs"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                bad(name, value, "None or an integer >= 0")
        if not _finite(self.temperature) or self.temperature < 0:
            bad("temperature", self.temperature, ">= 0 (0 means greedy)")
        if not isinstance(self.top_k, int) or self.top_k < 0:
            bad("top_k", self.top_k, "an integer >= 0 (0 means off)")
        if not _finite(self.top_p) or not 0 < self.top_p <= 1:
            bad("top_p", self.top_p, "in (0, 1]")
        if not _finite(self.min_p) or not 0 <= self.min_p < 1:
            bad("min_p", self.min_p, "in [0, 1)")
        if not _finite(self.repetition_penalty) or self.repetition_penalty <= 0:
            bad("repetition_penalty", self.repetition_penalty, "> 0 (1 means off)")
        for name in ("presence_penalty", "frequency_penalty"):
            value = getattr(self, name)
            if not _finite(value) or not -2 <= value <= 2:
                bad(name, value, "between -2 and 2")
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        if any(not isinstance(s, str) or not s for s in self.stop):
            bad("stop", self.stop, "a list of non-empty strings")
        if any(not callable(p) for p in self.logits_processors):
            bad("logits_processors", self.logits_processors, "a list of callables")


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# ----------------------------------------------------------------------------- processors


class RepetitionPenalty:
    """CTRL's penalty over prompt and generated tokens: logit/p if positive, logit*p if negative."""

    def __init__(self, penalty: float):
        self.penalty = penalty

    def __call__(self, logits, prompt_ids, generated_ids):
        ids = torch.as_tensor(list(prompt_ids) + list(generated_ids), dtype=torch.long)
        if ids.numel() == 0:
            return logits
        ids = ids.unique()
        seen = logits[ids]
        logits = logits.clone()
        logits[ids] = torch.where(seen > 0, seen / self.penalty, seen * self.penalty)
        return logits


class PresenceFrequencyPenalty:
    """OpenAI's penalties over generated tokens: logit - presence*[count>0] - frequency*count."""

    def __init__(self, presence: float, frequency: float):
        self.presence, self.frequency = presence, frequency

    def __call__(self, logits, prompt_ids, generated_ids):
        if not generated_ids:
            return logits
        counts = torch.bincount(torch.as_tensor(list(generated_ids), dtype=torch.long),
                                minlength=logits.shape[-1])[: logits.shape[-1]].to(logits.dtype)
        return logits - self.presence * (counts > 0).to(logits.dtype) - self.frequency * counts


class Temperature:
    def __init__(self, temperature: float):
        self.temperature = temperature

    def __call__(self, logits, prompt_ids, generated_ids):
        return logits / self.temperature


class TopK:
    """Keep the k largest logits (ties at the k-th value are kept, as in HF)."""

    def __init__(self, k: int):
        self.k = k

    def __call__(self, logits, prompt_ids, generated_ids):
        if self.k >= logits.shape[-1]:
            return logits
        kth = torch.topk(logits, self.k).values[-1]
        return logits.masked_fill(logits < kth, -math.inf)


class TopP:
    """Nucleus: keep the smallest set of most likely tokens whose probability reaches p."""

    def __init__(self, p: float):
        self.p = p

    def __call__(self, logits, prompt_ids, generated_ids):
        sorted_logits, order = torch.sort(logits, descending=True)
        cumulative = torch.softmax(sorted_logits, -1).cumsum(-1)
        # A token is dropped when the tokens before it already reach p (the most likely is always kept).
        drop_sorted = (cumulative - torch.softmax(sorted_logits, -1)) >= self.p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        return logits.masked_fill(drop, -math.inf)


class MinP:
    """Keep tokens whose probability is at least min_p times the top token's probability."""

    def __init__(self, min_p: float):
        self.min_p = min_p

    def __call__(self, logits, prompt_ids, generated_ids):
        probs = torch.softmax(logits, -1)
        return logits.masked_fill(probs < self.min_p * probs.max(), -math.inf)


def build_processors(params: SamplingParams) -> list:
    """The processors a request needs, in application order (greedy still applies the penalties)."""
    processors: list = list(params.logits_processors)
    if params.repetition_penalty != 1.0:
        processors.append(RepetitionPenalty(params.repetition_penalty))
    if params.presence_penalty or params.frequency_penalty:
        processors.append(PresenceFrequencyPenalty(params.presence_penalty, params.frequency_penalty))
    if not params.greedy:
        if params.temperature != 1.0:
            processors.append(Temperature(params.temperature))
        if params.top_k:
            processors.append(TopK(params.top_k))
        if params.top_p < 1.0:
            processors.append(TopP(params.top_p))
        if params.min_p > 0:
            processors.append(MinP(params.min_p))
    return processors


def apply_processors(processors, logits: torch.Tensor, prompt_ids, generated_ids) -> torch.Tensor:
    for processor in processors:
        logits = processor(logits, prompt_ids, generated_ids)
    return logits


class Sampler:
    """Picks one request's next tokens: its processors, its own random generator (seeded per request)."""

    def __init__(self, params: SamplingParams, device="cpu"):
        self.params = params
        self.processors = build_processors(params)
        self.generator = torch.Generator(device=device)
        if params.seed is not None:
            self.generator.manual_seed(params.seed)
        else:
            self.generator.seed()

    def distribution(self, logits: torch.Tensor, prompt_ids, generated_ids) -> torch.Tensor:
        """Probabilities [vocab] after the processors (one-hot on the argmax when greedy)."""
        logits = apply_processors(self.processors, logits, prompt_ids, generated_ids)
        if self.params.greedy:
            return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).to(torch.float32)
        return torch.softmax(logits, -1)

    def sample(self, logits: torch.Tensor, prompt_ids, generated_ids) -> int:
        """logits: float32 [vocab] -> token id."""
        logits = apply_processors(self.processors, logits, prompt_ids, generated_ids)
        if self.params.greedy:
            return int(logits.argmax(-1))
        probs = torch.softmax(logits, -1)
        return int(torch.multinomial(probs, 1, generator=self.generator))

    def draw(self, probs: torch.Tensor) -> int:
        """One token from an already-processed distribution [vocab]."""
        if self.params.greedy:
            return int(probs.argmax(-1))
        return int(torch.multinomial(probs, 1, generator=self.generator))

    def uniform(self) -> float:
        return float(torch.rand((), generator=self.generator))
