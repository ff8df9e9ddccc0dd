"""The plain reference loop (`generate_reference`: Decoder.forward + KVCache + Sampler) against the
engine (batched, one-token step): the same tokens, greedy and sampled, for every family."""

import pytest
import torch

from slmkit.infer import Generator, SamplingParams
from slmkit.infer.reference import generate_reference

from .conftest import random_model

FAMILIES = {
    "qwen3": {},
    "gpt2": dict(norm="layernorm", mlp="gelu", positions="learned", qk_norm=False, n_kv_heads=4),
    "moe": dict(n_experts=4, moe_top_k=2, moe_d_ff=16),
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_reference_loop_gives_the_engines_tokens(family):
    model = random_model(**FAMILIES[family])
    engine = Generator(model, eos_ids=set())
    for prompt, params in (([1, 2, 3], SamplingParams(temperature=0, max_new_tokens=30)),
                           (list(range(40, 52)), SamplingParams(temperature=0.9, top_k=20, max_new_tokens=20, seed=4))):
        expected = engine.generate(prompt, params).token_ids
        assert generate_reference(model, prompt, params) == expected


def test_reference_loop_stops_at_eos_and_the_context_and_keeps_the_global_rng():
    model = random_model(max_seq_len=16)
    greedy = SamplingParams(temperature=0, max_new_tokens=50)
    free = generate_reference(model, [5, 6], greedy)
    assert len(free) == 14  # the context (16) less the prompt
    assert generate_reference(model, [5, 6], greedy, eos_ids={free[3]}) == free[:3]
    state = torch.get_rng_state()
    generate_reference(model, list(range(30)), SamplingParams(temperature=1.0, max_new_tokens=5, seed=1))
    assert torch.equal(torch.get_rng_state(), state)  # sampling has its own generator
    with pytest.raises(ValueError, match="empty"):
        generate_reference(model, [], greedy)
