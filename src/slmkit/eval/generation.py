"""Generating answers for the suites that read what a model writes (safety, judge, story requests).

    generator = LocalGenerator(model, tokenizer)             # or EndpointClient(...) (endpoint.py), same method
    replies = generator.chat([[{"role": "user", "content": "Tell me a story about a cat."}]], max_new_tokens=128)

`chat(conversations, max_new_tokens, temperature, seed)` takes a list of conversations (lists of
{"role", "content"} messages) and returns one reply string each, in order. A local model renders each
conversation with its tokenizer's chat template (a plain "User: ... / Assistant:" transcript without one,
stopping at the next "User:" line) and decodes the whole list as one continuous batch.
"""

from __future__ import annotations

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
            prompts.append(ids[-max(1, self.window - max_new_tokens):])  # keep the end: the question
        params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed,
                                stop=chat_stop_strings(self.tokenizer))
        return [done.text.strip() for done in self.generator.generate(prompts, params)]
