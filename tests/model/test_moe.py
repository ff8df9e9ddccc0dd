"""Routing and auxiliary losses of the MoE layer, against hand computations."""

import math

import torch
import torch.nn.functional as F

from slmkit.model.moe import MoE, load_balancing_loss, route, router_z_loss

from .tiny import tiny_config


def test_route_picks_top_k_and_renormalises():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0], [0.0, 3.0, 0.0, 2.9]])
    weights, ids = route(logits, top_k=2, normalize=True)
    assert ids.tolist() == [[0, 1], [1, 3]]
    p = F.softmax(logits, -1)
    torch.testing.assert_close(weights[0], p[0, [0, 1]] / p[0, [0, 1]].sum())
    torch.testing.assert_close(weights.sum(-1), torch.ones(2))
    raw, _ = route(logits, top_k=2, normalize=False)
    torch.testing.assert_close(raw[1], p[1, [1, 3]])


def test_moe_output_equals_a_loop_over_tokens():
    torch.manual_seed(0)
    config = tiny_config(n_experts=5, moe_top_k=2, moe_d_ff=12, n_shared_experts=1)
    moe = MoE(config)
    for p in moe.parameters():
        torch.nn.init.normal_(p, std=0.2)
    x = torch.randn(2, 7, 32)
    out, router_logits = moe(x)
    flat = x.reshape(-1, 32)
    expected = []
    for t in range(flat.shape[0]):  # the slow, obvious definition
        probs = F.softmax(flat[t] @ moe.router.weight.T, -1)
        w, e = probs.topk(2)
        w = w / w.sum()
        y = moe.shared(flat[t])
        for weight, expert in zip(w, e):
            ex = moe.experts
            h = F.silu(ex.gate_proj[expert] @ flat[t]) * (ex.up_proj[expert] @ flat[t])
            y = y + weight * (ex.down_proj[expert] @ h)
        expected.append(y)
    torch.testing.assert_close(out.reshape(-1, 32), torch.stack(expected))
    assert router_logits.shape == (14, 5)


def test_load_balancing_loss_by_hand():
    # 4 tokens, 2 experts, top-1. Token probabilities chosen so the hand computation is easy.
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.4, 0.6]])
    logits = probs.log()
    f = torch.tensor([3 / 4, 1 / 4])  # share of assignments
    P = probs.mean(0)  # mean router probability
    expected = 2 * (f * P).sum()
    torch.testing.assert_close(load_balancing_loss([logits], top_k=1), expected)
    # pooled over layers: two identical layers give the same value
    torch.testing.assert_close(load_balancing_loss([logits, logits], top_k=1), expected)


def test_uniform_routing_gives_top_k_balance_loss():
    logits = torch.zeros(16, 4)
    logits[torch.arange(16), torch.arange(16) % 4] = 1.0  # every expert chosen equally often
    loss = load_balancing_loss([logits], top_k=1)
    assert abs(loss.item() - 1.0) < 1e-6


def test_router_z_loss_by_hand():
    logits = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    expected = (math.log(math.e + math.e**2) ** 2 + math.log(2) ** 2) / 2
    assert abs(router_z_loss([logits]).item() - expected) < 1e-5
    mask = torch.tensor([[1, 0]])
    assert abs(router_z_loss([logits], mask).item() - math.log(math.e + math.e**2) ** 2) < 1e-5


def test_decoder_reports_weighted_aux_loss():
    from slmkit.model import Decoder

    torch.manual_seed(0)
    model = Decoder(tiny_config(n_experts=4, moe_top_k=2, moe_d_ff=16, moe_aux_loss_coef=0.01, moe_z_loss_coef=0.001))
    out = model(torch.randint(0, 64, (2, 5)))
    torch.testing.assert_close(out.aux_loss, 0.01 * out.load_balancing_loss + 0.001 * out.router_z_loss)
    out.aux_loss.backward()
    assert model.blocks[0].mlp.router.weight.grad.abs().sum() > 0  # the aux loss trains the router
