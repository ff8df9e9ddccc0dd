"""The decoder's speedrun switches against hand values: ReLU² MLP, logit soft-capping (forward, chunked loss,
the one-token decode step), zero-initialised output projections; parameter counts; HF export refuses them."""

import math

import pytest
import torch

from slmkit.errors import CheckpointError
from slmkit.infer import ModelRunner
from slmkit.interop.hf_config import export_architecture
from slmkit.model import Decoder, ModelConfig
from slmkit.model.counting import count_parameters
from slmkit.model.mlp import ReluSquaredMLP
from tests.infer.conftest import assert_decodes_like_forward
from tests.model.tiny import tiny_config


def test_relu_squared_mlp_by_hand():
    mlp = ReluSquaredMLP(2, 3)
    with torch.no_grad():
        mlp.up_proj.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]]))
        mlp.down_proj.weight.copy_(torch.tensor([[1.0, 1.0, 1.0], [0.0, 2.0, 0.0]]))
    x = torch.tensor([[3.0, -2.0]])  # up: [3, -2, 5] -> relu^2: [9, 0, 25]
    torch.testing.assert_close(mlp(x), torch.tensor([[34.0, 0.0]]))


def test_relu2_parameter_count_is_the_modules():
    config = tiny_config(mlp="relu2", d_ff=96)
    model = Decoder(config)
    assert count_parameters(config)["total"] == sum(p.numel() for p in model.parameters())
    assert not hasattr(model.blocks[0].mlp, "gate_proj")


def test_softcap_bounds_the_logits_and_is_tanh_of_the_head():
    torch.manual_seed(0)
    plain = Decoder(tiny_config(init_std=2.0)).eval()  # large weights: logits far beyond the cap
    capped = Decoder(tiny_config(init_std=2.0, logit_softcap=5.0)).eval()
    capped.load_state_dict(plain.state_dict())
    ids = torch.randint(0, 64, (2, 9))
    with torch.no_grad():
        raw, got = plain(ids).logits, capped(ids).logits
    assert raw.abs().max() > 10 and got.abs().max() < 5
    torch.testing.assert_close(got, 5.0 * torch.tanh(raw / 5.0))
    targets = torch.randint(0, 64, (2, 9))
    with torch.no_grad():
        whole = capped(ids, targets).loss
        chunked = capped(ids, targets, loss_chunk_size=4).loss
    expected = torch.nn.functional.cross_entropy(got.flatten(0, 1), targets.flatten())
    torch.testing.assert_close(whole, expected)
    torch.testing.assert_close(chunked, expected)


def test_the_decode_step_applies_the_softcap():
    torch.manual_seed(0)
    model = Decoder(tiny_config(init_std=1.0, logit_softcap=3.0)).eval()
    runner = ModelRunner(model)
    assert runner.fast is not None
    assert_decodes_like_forward(runner, model, torch.randint(0, 64, (2, 8)))


def test_zero_init_makes_every_block_the_identity():
    torch.manual_seed(0)
    model = Decoder(tiny_config(zero_init_residual=True, n_experts=0)).eval()
    for block in model.blocks:
        assert not block.attn.out_proj.weight.any() and not block.mlp.down_proj.weight.any()
        assert block.attn.q_proj.weight.std() > 0.01  # the other projections keep their random init
    ids = torch.randint(0, 64, (1, 6))
    with torch.no_grad():
        expected = model.head(model.final_norm(model.embed(ids)))
        torch.testing.assert_close(model(ids).logits, expected)
    moe = Decoder(tiny_config(zero_init_residual=True, n_experts=4, moe_top_k=2))
    assert not moe.blocks[0].mlp.experts.down_proj.any()


@pytest.mark.parametrize("switch, message", [
    ({"mlp": "relu2"}, "needs mlp='swiglu', this model has mlp='relu2'"),
    ({"logit_softcap": 30.0}, "needs logit_softcap=None, this model has logit_softcap=30.0"),
])
def test_hf_export_refuses_a_switch_transformers_cannot_express(switch, message):
    with pytest.raises(CheckpointError, match=message):
        export_architecture(tiny_config(**switch))
    assert export_architecture(tiny_config(zero_init_residual=True)) == "Qwen3ForCausalLM"  # init only: exportable


def test_a_bad_softcap_is_refused():
    with pytest.raises(ValueError, match="logit_softcap must be positive"):
        ModelConfig(logit_softcap=0.0)
    assert math.isclose(ModelConfig(logit_softcap=15).logit_softcap, 15)
