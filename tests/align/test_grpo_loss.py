"""GRPO's pieces against hand values: group advantages (unbiased std), the k3 KL, and the clipped loss's gradient
(A x grad log pi inside the clip range, zero when the ratio is clipped on the side the advantage pushes)."""

import math

import pytest
import torch

from slmkit.align.grpo_loss import group_advantages, grpo_token_loss, kl_k3


def test_group_advantages_on_known_groups():
    adv = group_advantages(torch.tensor([1.0, 0, 0, 1, 3, 3, 3, 3]), group_size=4)
    expected = 0.5 / (math.sqrt(1 / 3) + 1e-4)  # unbiased std of [1,0,0,1] is sqrt(1/3): +-0.866
    torch.testing.assert_close(adv[:4], torch.tensor([expected, -expected, -expected, expected]))
    assert adv[:4].abs().tolist() == pytest.approx([0.866] * 4, abs=1e-3)
    assert adv[4:].tolist() == [0, 0, 0, 0]  # a group of equal rewards teaches nothing
    assert group_advantages(torch.tensor([1.0, 0, 0, 1]), 4, scale=False).tolist() == [0.5, -0.5, -0.5, 0.5]
    with pytest.raises(ValueError, match="groups of 3"):
        group_advantages(torch.zeros(4), 3)


def test_k3_kl_against_its_formula():
    logp, ref = torch.tensor([-1.0, -2.0, -0.5]), torch.tensor([-1.0, -1.0, -2.0])
    d = ref - logp
    torch.testing.assert_close(kl_k3(logp, ref), torch.exp(d) - d - 1)
    assert kl_k3(logp, ref)[0] == 0 and (kl_k3(logp, ref) >= 0).all()
    assert kl_k3(torch.tensor([-2.0]), torch.tensor([-1.0])).item() == pytest.approx(math.e - 2)


def test_loss_gradient_inside_and_outside_the_clip():
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    logps = torch.tensor([[-1.0, -2.0, -3.0]], requires_grad=True)
    loss, stats = grpo_token_loss(logps, logps.detach(), torch.tensor([2.0]), mask)
    loss.sum().backward()
    assert logps.grad.tolist() == [[-2.0, -2.0, 0.0]]  # -A on completion tokens, nothing on padding
    assert stats["clip_ratio"] == 0

    for advantage, clipped in ((1.0, True), (-1.0, False)):
        logps = torch.tensor([[-1.0, -2.0]], requires_grad=True)
        old = logps.detach() - 0.5  # ratio e^0.5 = 1.65, beyond 1 + 0.2
        loss, stats = grpo_token_loss(logps, old, torch.tensor([advantage]), torch.ones(1, 2))
        loss.sum().backward()
        if clipped:  # a positive advantage already past the clip: no further push
            assert logps.grad.abs().sum() == 0 and stats["clip_ratio"] == 1
        else:  # a negative one is not clipped from this side: the pull stays
            torch.testing.assert_close(logps.grad, torch.full((1, 2), math.exp(0.5)))


def test_kl_term_adds_beta_k3():
    logps, ref = torch.tensor([[-1.0, -2.0]]), torch.tensor([[-1.5, -1.0]])
    base, _ = grpo_token_loss(logps, logps, torch.tensor([0.0]), torch.ones(1, 2))
    with_kl, stats = grpo_token_loss(logps, logps, torch.tensor([0.0]), torch.ones(1, 2), ref_logps=ref, beta=0.1)
    torch.testing.assert_close(with_kl - base, 0.1 * kl_k3(logps, ref))
    assert stats["kl"] == pytest.approx(float(kl_k3(logps, ref).mean()))
