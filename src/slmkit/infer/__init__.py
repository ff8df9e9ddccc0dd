"""Fast generation over the model's per-row KV cache: one specialised one-token decode step, composable
sampling, a step-wise batch engine (continuous batching), streaming text, and speculative decoding.

    from slmkit.infer import Generator, SamplingParams
    gen = Generator.from_pretrained("runs/demo")
    print(gen.generate("Once upon a time", max_new_tokens=40, temperature=0.8, top_p=0.9, seed=0).text)
"""

from slmkit.infer.engine import BatchGenerator, Completion, ContextLengthError, StepEvent, eos_ids_for
from slmkit.infer.generator import Generator, load_for_inference, make_params
from slmkit.infer.logprobs import TokenLogprob, prompt_logprobs, token_logprob
from slmkit.infer.runner import ModelRunner
from slmkit.infer.sampling import (
    MinP, PresenceFrequencyPenalty, RepetitionPenalty, Sampler, SamplingError, SamplingParams, Temperature, TopK,
    TopP, apply_processors, build_processors,
)
from slmkit.infer.speculative import SpeculativeGenerator, accept_draft
from slmkit.infer.text import TextStream

__all__ = [
    "BatchGenerator", "Completion", "ContextLengthError", "Generator", "MinP", "ModelRunner",
    "PresenceFrequencyPenalty", "RepetitionPenalty", "Sampler", "SamplingError", "SamplingParams",
    "SpeculativeGenerator", "StepEvent", "Temperature", "TextStream", "TokenLogprob", "TopK", "TopP", "accept_draft",
    "apply_processors", "build_processors", "eos_ids_for", "load_for_inference", "make_params", "prompt_logprobs",
    "token_logprob",
]
