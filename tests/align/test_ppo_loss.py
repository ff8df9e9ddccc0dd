"""PPO's pieces against hand-computed values: GAE over a completion (prompt and padding masked), the per-token KL
penalty with the score on the last token, whitening, and the clipped value loss."""

import pytest
import torch

from slmkit.align.ppo_loss import clipped_value_loss, gae, kl_penalised_rewards, whiten


def test_gae_against_a_hand_computed_sequence():
    rewards = torch.tensor([[0.0, 0.0, 1.0, 0.0], [9.0, 0.0, 1.0, 9.0]])
    values = torch.tensor([[0.5, 0.6, 0.7, 0.0], [9.0, 0.6, 0.7, 9.0]])
    mask = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 0]])
    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=0.95)
    # t=2: 1 - 0.7 = 0.3; t=1: (0.7 - 0.6) + 0.95 x 0.3 = 0.385; t=0: (0.6 - 0.5) + 0.95 x 0.385 = 0.46575
    torch.testing.assert_close(advantages[0], torch.tensor([0.46575, 0.385, 0.3, 0.0]))
    torch.testing.assert_close(returns[0], torch.tensor([0.96575, 0.985, 1.0, 0.0]))
    torch.testing.assert_close(advantages[1], torch.tensor([0.0, 0.385, 0.3, 0.0]))  # masked values never leak in


def test_gae_with_discount_is_the_discounted_sum_of_deltas():
    rewards, values = torch.tensor([[0.2, -0.1, 0.5]]), torch.tensor([[0.1, 0.3, -0.2]])
    advantages, _ = gae(rewards, values, torch.ones(1, 3), gamma=0.9, lam=0.8)
    deltas = [0.2 + 0.9 * 0.3 - 0.1, -0.1 + 0.9 * -0.2 - 0.3, 0.5 - (-0.2)]
    expected = [sum((0.9 * 0.8) ** k * deltas[t + k] for k in range(3 - t)) for t in range(3)]
    torch.testing.assert_close(advantages[0], torch.tensor(expected))


def test_kl_penalty_and_score_on_the_last_completion_token():
    logps, ref = torch.tensor([[-1.0, -1.0, -2.0, 0.0]]), torch.tensor([[-1.0, -1.5, -1.0, 0.0]])
    rewards = kl_penalised_rewards(torch.tensor([3.0]), logps, ref, torch.tensor([[0, 1, 1, 0]]), kl_coef=0.1)
    torch.testing.assert_close(rewards, torch.tensor([[0.0, -0.05, 0.1 + 3.0, 0.0]]))


def test_whiten_and_clipped_value_loss():
    x, mask = torch.tensor([1.0, 2.0, 3.0, 100.0]), torch.tensor([1, 1, 1, 0])
    w = whiten(x, mask)
    assert w[:3].tolist() == pytest.approx([-1.0, 0.0, 1.0], abs=1e-6) and w[3] == 0
    values, old, returns = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    loss = clipped_value_loss(values, old, returns, torch.ones(1, 2), clip=0.2)
    # token 0: max((1-0)^2, (0.2-0)^2)/2 = 0.5; token 1: max((0-1)^2, (0-1)^2)/2 = 0.5
    torch.testing.assert_close(loss, torch.tensor([[0.5, 0.5]]))
    moved = clipped_value_loss(torch.tensor([[0.9]]), torch.tensor([[0.0]]), torch.tensor([[1.0]]), torch.ones(1, 1))
    assert moved.item() == pytest.approx(0.5 * 0.8 ** 2)  # the clipped value (0.2) is further from 1: it counts
