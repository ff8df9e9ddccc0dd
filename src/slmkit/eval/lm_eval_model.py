"""slmkit as an lm-eval model: lm-eval's tasks and aggregation over slmkit's batched scorer and generator.

    from slmkit.eval.lm_eval_model import SlmkitLM
    lm = SlmkitLM(model, tokenizer)                       # or SlmkitLM.from_path("runs/demo")
    lm_eval.simple_evaluate(model=lm, tasks=["lambada_openai"])

    slm lm-eval --model slmkit --model_args path=runs/demo --tasks lambada_openai   # lm-eval's own CLI

lm-eval 0.4 has no plugin entry point for models, so its `lm_eval` command cannot find this class by
itself: `slm lm-eval ARGS` registers it under the name "slmkit" and then runs lm-eval's CLI with ARGS.
`--model_args` takes path (a model directory, run, adapter or quantized checkpoint), base (an adapter's
base), max_length, dtype (float32 | bfloat16) and device; lm-eval's --batch_size and --device pass through.
Requires the lm-eval package (`pip install lm-eval`), which nothing else in slmkit needs.
"""

from __future__ import annotations

import sys

import torch
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from slmkit.eval.loglikelihood import LoglikelihoodScorer
from slmkit.infer.generator import Generator
from slmkit.infer.sampling import SamplingParams
from slmkit.loading import eos_ids_for, load_for_inference

DEFAULT_MAX_GEN_TOKS = 256
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "auto": None}


class SlmkitLM(LM):
    # Turns a path into (model, tokenizer, eos ids); `register(loader=...)` swaps in one that also loads
    # adapters with their base (slmkit.finetune.loading.load_for_use).
    loader = staticmethod(lambda path, base=None, device=None, dtype=None: load_for_inference(path, device, dtype))

    def __init__(self, model=None, tokenizer=None, eos_ids: set[int] | None = None, path: str | None = None,
                 base: str | None = None, batch_size: int | str = 32, max_length: int | str | None = None,
                 dtype: str = "float32", device: str | None = None, max_gen_toks: int | str = DEFAULT_MAX_GEN_TOKS,
                 **_ignored):
        super().__init__()
        if model is None:
            if path is None:
                raise ValueError("SlmkitLM needs a model or --model_args path=DIR")
            model, tokenizer, eos_ids = self.loader(path, base=base, device=_available(device), dtype=_DTYPES[dtype])
        if tokenizer is None:
            raise ValueError("the model has no tokenizer.json; lm-eval's tasks are text and need one")
        self.model, self.tokenizer = model.eval(), tokenizer
        self.eos_ids = set(eos_ids) if eos_ids is not None else eos_ids_for(tokenizer)
        size = 32 if str(batch_size).startswith("auto") else int(batch_size)
        self.scorer = LoglikelihoodScorer(model, tokenizer, int(max_length) if max_length else None, size)
        self.generator = Generator(model, tokenizer, self.eos_ids, max_batch=size)
        self.max_gen_toks = int(max_gen_toks)
        self.path = path

    @classmethod
    def from_path(cls, path: str, **kwargs) -> SlmkitLM:
        return cls(path=path, **kwargs)

    # --------------------------------------------------------------------------------- lm-eval's API
    def loglikelihood(self, requests) -> list[tuple[float, bool]]:
        scored = self.scorer.loglikelihood([tuple(r.args) for r in requests])
        return [(s.logprob, s.is_greedy) for s in scored]

    def loglikelihood_rolling(self, requests) -> list[float]:
        return self.scorer.loglikelihood_rolling([r.args[0] for r in requests])

    def generate_until(self, requests) -> list[str]:
        """Greedy (or sampled when do_sample) continuations, cut before the first `until` string; requests
        with the same settings run as one batch."""
        out: list[str | None] = [None] * len(requests)
        by_settings: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            by_settings.setdefault(_settings_key(r.args[1]), []).append(i)
        for key, indices in by_settings.items():
            params = self._params(dict(key))
            prompts = [self._fit_prompt(requests[i].args[0], params.max_new_tokens) for i in indices]
            for i, done in zip(indices, self.generator.generate(prompts, params)):
                out[i] = done.text
        return out  # type: ignore[return-value]

    @property
    def tokenizer_name(self) -> str:
        return f"slmkit-{self.path or 'model'}"

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return getattr(self.tokenizer, "chat_template", None) or ""

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        return self.tokenizer.apply_chat_template(chat_history, add_generation_prompt=add_generation_prompt)

    # --------------------------------------------------------------------------------- helpers
    def _params(self, kwargs: dict) -> SamplingParams:
        until = kwargs.get("until") or []
        until = [until] if isinstance(until, str) else list(until)
        sample = bool(kwargs.get("do_sample", False))
        return SamplingParams(max_new_tokens=int(kwargs.get("max_gen_toks", self.max_gen_toks)),
                              temperature=float(kwargs.get("temperature", 1.0)) if sample else 0.0,
                              top_p=float(kwargs.get("top_p", 1.0)) if sample else 1.0,
                              stop=[s for s in until if s], seed=kwargs.get("seed"))

    def _fit_prompt(self, context: str, max_new: int) -> list[int]:
        """The context's ids, left-truncated to leave room for `max_new` tokens (as lm-eval's hf model)."""
        ids = self.tokenizer.encode(context) or [self.scorer.prefix_id]
        room = max(1, self.model.config.max_seq_len - max_new)
        return ids[-room:]


def _available(device: str | None) -> str | None:
    """lm-eval's CLI passes --device (default "cuda"); like its hf model, fall back to the CPU, and say so."""
    if device and device.startswith("cuda") and not torch.cuda.is_available():
        print(f"slmkit: device {device} is not available, using the CPU", file=sys.stderr)
        return "cpu"
    return device


def _settings_key(gen_kwargs: dict) -> tuple:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in gen_kwargs.items()))


def register(loader=None) -> type[SlmkitLM]:
    """Register SlmkitLM with lm-eval as "slmkit" (loading paths with `loader` when given)."""
    if loader is not None:
        SlmkitLM.loader = staticmethod(loader)
    register_model("slmkit")(SlmkitLM)
    return SlmkitLM
