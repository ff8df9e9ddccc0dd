"""`Generator`: the one-call API over the engine — load, generate (batched), stream, speculate.

    from slmkit.infer import Generator
    gen = Generator.from_pretrained("runs/demo")               # ours, Hugging Face, or quantized
    print(gen.generate("Once upon a time", max_new_tokens=50, temperature=0.8, seed=1).text)
    for delta in gen.stream("Once upon a time", max_new_tokens=50):
        print(delta, end="", flush=True)
    outs = gen.generate(["A", "B longer prompt"], temperature=0)   # batched, one result per prompt
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields


from slmkit.errors import SlmError
from slmkit.infer.engine import BatchGenerator, Completion, ContextLengthError
from slmkit.infer.runner import ModelRunner
from slmkit.infer.sampling import SamplingParams
from slmkit.loading import eos_ids_for, load_for_inference

_PARAM_NAMES = {f.name for f in fields(SamplingParams)}


def make_params(params: SamplingParams | None = None, **kwargs) -> SamplingParams:
    unknown = sorted(set(kwargs) - _PARAM_NAMES)
    if unknown:
        raise SlmError(f"unknown sampling option(s): {', '.join(unknown)}")
    if params is None:
        return SamplingParams(**kwargs)
    values = {f: getattr(params, f) for f in _PARAM_NAMES}
    values.update(kwargs)
    return SamplingParams(**values)


class Generator:
    def __init__(self, model, tokenizer=None, eos_ids: set[int] | None = None, max_batch: int = 8):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.eos_ids = set(eos_ids) if eos_ids is not None else eos_ids_for(tokenizer)
        self.runner = ModelRunner(model)
        self.max_batch = max_batch
        self._engine: BatchGenerator | None = None

    @classmethod
    def from_pretrained(cls, path, device=None, dtype=None, **kwargs) -> "Generator":
        model, tokenizer, eos = load_for_inference(path, device=device, dtype=dtype)
        return cls(model, tokenizer, eos, **kwargs)

    @property
    def context_length(self) -> int:
        return self.model.config.max_seq_len

    def encode(self, prompt: str | list[int]) -> list[int]:
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise SlmError("this model directory has no tokenizer.json; pass token ids instead of text")
            return self.tokenizer.encode(prompt)
        return [int(i) for i in prompt]

    def check_prompt(self, ids: list[int]) -> None:
        """ContextLengthError unless the prompt leaves room for at least one new token."""
        if len(ids) >= self.context_length:
            raise ContextLengthError(f"the prompt has {len(ids)} tokens but the context window is "
                                     f"{self.context_length} tokens (including room for one new token); "
                                     "shorten the prompt")

    def engine(self, rows: int) -> BatchGenerator:
        """A BatchGenerator with at least `rows` rows, reused between calls (no per-call cache allocation)."""
        if self._engine is None or self._engine.max_batch < rows:
            self._engine = BatchGenerator(self.model, self.tokenizer, max(rows, 1), eos_ids=self.eos_ids,
                                          runner=self.runner)
        return self._engine

    def generate(self, prompt, params: SamplingParams | None = None, **kwargs) -> Completion | list[Completion]:
        """prompt: text, token ids, or a list of either (batched). Keyword arguments are SamplingParams fields."""
        params = make_params(params, **kwargs)
        single = isinstance(prompt, str) or (prompt and isinstance(prompt[0], int))
        prompts = [prompt] if single else list(prompt)
        if not prompts:
            return []
        encoded = [self.encode(p) for p in prompts]
        engine = self.engine(min(len(prompts), self.max_batch))
        results: dict[str, Completion] = {}
        ids = []
        for i, ids_ in enumerate(encoded):
            # A per-prompt seed keeps batched sampling reproducible one prompt at a time as well.
            row_params = params if params.seed is None or i == 0 else make_params(params, seed=params.seed + i)
            ids.append(engine.add(ids_, row_params))
            results[ids[-1]] = Completion(ids[-1], ids_, [], "", "")
        try:
            while engine.has_work():
                for event in engine.step():
                    done = results[event.request_id]
                    if event.token_id is not None:
                        done.token_ids.append(event.token_id)
                    done.text += event.delta
                    if event.finish_reason:
                        done.finish_reason = event.finish_reason
        except BaseException:
            for request_id in ids:
                engine.cancel(request_id)
            raise
        out = [results[i] for i in ids]
        return out[0] if single else out

    def stream(self, prompt, params: SamplingParams | None = None, **kwargs) -> Iterator[str]:
        """Yield text deltas (never half a UTF-8 character; stop strings withheld)."""
        params = make_params(params, **kwargs)
        engine = self.engine(1)
        request_id = engine.add(self.encode(prompt), params)
        try:
            while engine.has_work():
                for event in engine.step():
                    if event.request_id == request_id and event.delta:
                        yield event.delta
        finally:
            engine.cancel(request_id)
