"""Generating answers for the suites that read what a model writes (safety, judge, story requests).

    generator = LocalGenerator(model, tokenizer)             # or EndpointClient(...) (endpoint.py), same method
    replies = generator.chat([[{"role": "user", "content": "Tell me a story about a cat."}]], max_new_tokens=128)
    stories = generator.complete(["Once upon a time, a cat"], max_new_tokens=128)    # raw continuations

`chat(conversations, max_new_tokens, temperature, seed)` takes a list of conversations (lists of
{"role", "content"} messages) and returns one reply string each, in order. A local model renders each
conversation with its tokenizer's chat template (a plain "User: ... / Assistant:" transcript without one,
stopping at the next "User:" line) and decodes the whole list as one continuous batch. Prompts and replies
share the context window by chat_fitting's rule (a long prompt loses its start; a reply stops at the end).
`complete(prompts, max_new_tokens, temperature, seed, stop)` continues raw text prompts (no template), as
`EndpointClient.complete` does through /completions.
"""

from __future__ import annotations

from slmkit.eval.chat_fitting import prompt_room
from slmkit.infer.generator import Generator
from slmkit.infer.sampling import SamplingParams
from slmkit.loading import eos_ids_for
from slmkit.tokenizer.chat_template import chat_stop_strings, render_chat


class LocalGenerator:
    def __init__(self, model, tokenizer, eos_ids: set[int] | None = None, max_batch: int = 16):
        self.tokenizer = tokenizer
        self.generator = Generator(model, tokenizer, eos_ids if eos_ids is not None else eos_ids_for(tokenizer),
                                   max_batch=max_batch)
        self.window = model.config.max_seq_len

    def chat(self, conversations: list[list[dict]], max_new_tokens: int = 128, temperature: float = 0.0,
             seed: int = 0) -> list[str]:
        if not conversations:
            return []
        prompts = []
        for messages in conversations:
            ids = self.tokenizer.encode(render_chat(self.tokenizer, messages))
            prompts.append(ids[-prompt_room(self.window, max_new_tokens):])  # keep the end: the question
        params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed,
                                stop=chat_stop_strings(self.tokenizer))
        return [done.text.strip() for done in self.generator.generate(prompts, params)]

    def complete(self, prompts: list[str], max_new_tokens: int = 128, temperature: float = 0.0, seed: int = 0,
                 stop: list[str] | None = None) -> list[str]:
        if not prompts:
            return []
        encoded = [self.tokenizer.encode(p)[-prompt_room(self.window, max_new_tokens):] for p in prompts]
        params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed,
                                stop=list(stop or []))
        return [done.text for done in self.generator.generate(encoded, params)]
