"""DPO losses against torchtune's hand-computed vector, analytic values (ln 2 at policy == reference, each
variant's closed form), autograd's direction, and the empty-completion-mask error."""

import math

import pytest
import torch

from slmkit.align.dpo_loss import dpo_loss, sequence_logps
from slmkit.errors import ConfigError, DataError

# torchtune tests/torchtune/rlhf/loss/test_dpo_loss.py: beta 0.1 -> delta [0, 10, 20] -> -log sigmoid(0, 1, 2)
POLICY_C, POLICY_R = torch.tensor([-0.5, -10.0, -1.0]), torch.tensor([-0.1, -30.0, -21.0])
REF_C, REF_R = torch.tensor([-0.5, -10.1, -0.1]), torch.tensor([-0.1, -20.1, -0.1])


def test_sigmoid_matches_torchtunes_hand_vector():
    out = dpo_loss(POLICY_C, POLICY_R, REF_C, REF_R, beta=0.1)
    torch.testing.assert_close(out.losses, torch.tensor([0.693147, 0.313262, 0.126928]), atol=1e-5, rtol=0)
    metrics = out.metrics()
    assert metrics["rewards/margins"] == pytest.approx(0.1 * (0 + 10 + 20) / 3, rel=1e-5)
    assert metrics["rewards/accuracies"] == pytest.approx(2 / 3)


def test_policy_equal_to_reference_gives_ln2():
    logps = torch.tensor([-12.5, -3.0])
    assert dpo_loss(logps, logps - 1, logps, logps - 1).loss.item() == pytest.approx(math.log(2), abs=1e-7)


def test_variants_closed_forms():
    d = (POLICY_C - REF_C) - (POLICY_R - REF_R)
    hinge = dpo_loss(POLICY_C, POLICY_R, REF_C, REF_R, beta=0.1, loss_type="hinge").losses
    torch.testing.assert_close(hinge, torch.relu(1 - 0.1 * d))
    robust = dpo_loss(POLICY_C, POLICY_R, REF_C, REF_R, beta=0.1, loss_type="robust", label_smoothing=0.2).losses
    s = torch.sigmoid(0.1 * d)
    torch.testing.assert_close(robust, (-0.8 * s.log() + 0.2 * (1 - s).log()) / 0.6)
    smoothed = dpo_loss(POLICY_C, POLICY_R, REF_C, REF_R, beta=0.1, label_smoothing=0.2).losses
    torch.testing.assert_close(smoothed, -0.8 * s.log() - 0.2 * (1 - s).log())
    n_c, n_r = torch.tensor([2.0, 5.0, 4.0]), torch.tensor([1.0, 5.0, 8.0])
    ipo = dpo_loss(POLICY_C, POLICY_R, REF_C, REF_R, beta=0.1, loss_type="ipo", chosen_tokens=n_c,
                   rejected_tokens=n_r).losses
    torch.testing.assert_close(ipo, ((POLICY_C - REF_C) / n_c - (POLICY_R - REF_R) / n_r - 5.0) ** 2)


def test_the_gradient_raises_chosen_and_lowers_rejected():
    chosen, rejected = torch.tensor([-5.0], requires_grad=True), torch.tensor([-5.0], requires_grad=True)
    dpo_loss(chosen, rejected, torch.tensor([-5.0]), torch.tensor([-5.0])).loss.backward()
    assert chosen.grad.item() < 0 < rejected.grad.item()  # descending the loss raises chosen, lowers rejected


def test_sequence_logps_sums_completion_tokens_and_names_an_empty_mask():
    logits = torch.randn(2, 4, 7)
    labels = torch.randint(0, 7, (2, 4))
    mask = torch.tensor([[0, 1, 1, 0], [0, 0, 0, 1]], dtype=torch.bool)
    total, counts = sequence_logps(logits, labels, mask)
    manual = logits.log_softmax(-1).gather(-1, labels[..., None])[..., 0]
    torch.testing.assert_close(total, torch.stack([manual[0, 1] + manual[0, 2], manual[1, 3]]))
    assert counts.tolist() == [2, 1]
    mask[1] = False
    with pytest.raises(DataError, match="example 7 has an empty completion mask"):
        sequence_logps(logits, labels, mask, names=["example 3", "example 7"])


@pytest.mark.parametrize("kwargs, message", [
    (dict(loss_type="kto"), "unknown DPO loss_type"), (dict(beta=0.0), "beta must be positive"),
    (dict(label_smoothing=0.5), "label_smoothing"), (dict(loss_type="ipo"), "token counts"),
])
def test_bad_settings_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        dpo_loss(POLICY_C, POLICY_R, REF_C, REF_R, **kwargs)
