"""Logit processors against hand-computed distributions; the speculative accept/reject rule."""

import math

import pytest
import torch

from slmkit.infer import (
    Generator, MinP, PresenceFrequencyPenalty, RepetitionPenalty, Sampler, SamplingError, SamplingParams,
    SpeculativeGenerator, Temperature, TopK, TopP, accept_draft, build_processors,
)

from .conftest import random_model

INF = math.inf


def test_processors_against_hand_computed_values():
    logits = torch.log(torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05]))
    probs = lambda x: torch.softmax(x, -1)  # noqa: E731
    torch.testing.assert_close(Temperature(2.0)(logits, [], []), logits / 2)
    torch.testing.assert_close(probs(TopK(2)(logits, [], [])), torch.tensor([5 / 7, 2 / 7, 0, 0, 0]))
    # top-p 0.8: 0.5 + 0.2 = 0.7 < 0.8, so 0.15 is needed too; 0.1 and 0.05 go
    torch.testing.assert_close(probs(TopP(0.8)(logits, [], [])), torch.tensor([0.5, 0.2, 0.15, 0, 0]) / 0.85)
    torch.testing.assert_close(probs(TopP(0.7)(logits, [], [])), torch.tensor([0.5, 0.2, 0, 0, 0]) / 0.7)
    # min-p 0.25: keep p >= 0.125
    torch.testing.assert_close(probs(MinP(0.25)(logits, [], [])), torch.tensor([0.5, 0.2, 0.15, 0, 0]) / 0.85)
    raw = torch.tensor([2.0, -1.0, 0.5, 3.0])
    torch.testing.assert_close(RepetitionPenalty(2.0)(raw, [0], [1]), torch.tensor([1.0, -2.0, 0.5, 3.0]))
    torch.testing.assert_close(PresenceFrequencyPenalty(0.5, 0.25)(raw, [3], [0, 0, 2]),
                               torch.tensor([2.0 - 0.5 - 0.5, -1.0, 0.5 - 0.5 - 0.25, 3.0]))


def test_processor_order_and_composition():
    params = SamplingParams(temperature=0.5, top_k=3, top_p=0.9, min_p=0.1, repetition_penalty=1.3,
                            presence_penalty=0.1)
    names = [type(p).__name__ for p in build_processors(params)]
    assert names == ["RepetitionPenalty", "PresenceFrequencyPenalty", "Temperature", "TopK", "TopP", "MinP"]
    assert build_processors(SamplingParams(temperature=0)) == []


@pytest.mark.parametrize("bad", [dict(temperature=-1), dict(top_p=0), dict(top_p=1.5), dict(top_k=-2),
                                 dict(min_p=1.0), dict(repetition_penalty=0), dict(presence_penalty=3),
                                 dict(max_new_tokens=0), dict(temperature=float("nan"))])
def test_invalid_sampling_values_are_rejected(bad):
    with pytest.raises(SamplingError):
        SamplingParams(**bad)


def test_seeded_sampling_is_reproducible_and_seeds_differ():
    gen = Generator(random_model(), eos_ids=set())
    a = gen.generate([1, 2], max_new_tokens=15, temperature=1.0, seed=7).token_ids
    assert gen.generate([1, 2], max_new_tokens=15, temperature=1.0, seed=7).token_ids == a
    assert gen.generate([1, 2], max_new_tokens=15, temperature=1.0, seed=8).token_ids != a


def test_speculative_greedy_equals_plain_greedy():
    target, draft = random_model(seed=0), random_model(seed=1, n_layers=1)
    spec = SpeculativeGenerator(target, draft, k=3, eos_ids=set())
    plain = Generator(target, eos_ids=set())
    for prompt in ([1, 2, 3], [7] * 11):
        expected = plain.generate(prompt, max_new_tokens=25, temperature=0).token_ids
        result = spec.generate(prompt, max_new_tokens=25, temperature=0)
        assert result.token_ids == expected
        assert 0 <= result.acceptance_rate <= 1 and result.target_forwards <= 25
    same = SpeculativeGenerator(target, target, k=4, eos_ids=set()).generate([1, 2, 3], max_new_tokens=25,
                                                                            temperature=0)
    assert same.acceptance_rate == 1.0 and same.target_forwards < 10


def test_speculative_sampling_preserves_the_target_distribution():
    """The accept/reject rule's output tokens follow p exactly (chi-square on a 4-token vocabulary)."""
    p = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.4, 0.1], [0.7, 0.1, 0.1, 0.1]])
    q = torch.tensor([[0.4, 0.3, 0.2, 0.1], [0.1, 0.1, 0.1, 0.7]])
    draft_gen = torch.Generator().manual_seed(0)
    sampler = Sampler(SamplingParams(temperature=1.0, seed=0))
    n = 6000
    first = torch.zeros(4)
    second_given_first = torch.zeros(4)  # the second token when the first draft was accepted
    accepted_first = 0
    for _ in range(n):
        d1 = int(torch.multinomial(q[0], 1, generator=draft_gen))
        d2 = int(torch.multinomial(q[1], 1, generator=draft_gen))
        out = accept_draft(p, q, [d1, d2], sampler)
        first[out[0]] += 1
        if len(out) >= 2 and out[0] == d1:
            accepted_first += 1
            second_given_first[out[1]] += 1
    chi2 = float(((first - n * p[0]) ** 2 / (n * p[0])).sum())
    assert chi2 < 16.3, f"first-token counts {first.tolist()} deviate from p (chi2 {chi2:.1f}, df 3, p=0.001)"
    m = second_given_first.sum()
    chi2 = float(((second_given_first - m * p[1]) ** 2 / (m * p[1])).sum())
    assert chi2 < 16.3, f"second-token counts {second_given_first.tolist()} deviate from p (chi2 {chi2:.1f})"
    # a planted fault the test must catch: drawing from q instead of the residual
    biased = torch.zeros(4)
    for _ in range(2000):
        biased[int(torch.multinomial(q[0], 1, generator=draft_gen))] += 1
    assert float(((biased - 2000 * p[0]) ** 2 / (2000 * p[0])).sum()) > 16.3
