"""LoRA / rsLoRA / DoRA wrappers: PEFT's layer as the reference, the papers' formulas, exact merge and unmerge."""

import math

import peft
import pytest
import torch
from torch import nn

from slmkit.errors import ConfigError
from slmkit.finetune.lora import LoraConfig, LoraLinear, add_lora, lora_disabled, merge_lora, target_names
from slmkit.model import Decoder
from slmkit.quant import quantize_model
from tests.model.tiny import tiny_config


def _randomise_adapters(model, seed=1):
    gen = torch.Generator().manual_seed(seed)
    for _, m in model.named_modules():
        if isinstance(m, LoraLinear):
            with torch.no_grad():
                m.lora_B.copy_(torch.randn(m.lora_B.shape, generator=gen) * 0.3)
                if m.lora_magnitude is not None:
                    m.lora_magnitude.mul_(1 + 0.2 * torch.rand(m.lora_magnitude.shape, generator=gen))


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    return Decoder(tiny_config(**kw)).eval()


@pytest.mark.parametrize("variant", [{}, {"rslora": True}, {"dora": True}])
def test_single_layer_equals_peft(variant):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(16, 12))
    ref = peft.get_peft_model(net, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["0"], init_lora_weights=False,
                                                   use_rslora=variant.get("rslora", False),
                                                   use_dora=variant.get("dora", False)))
    peft_layer = ref.base_model.model[0]
    ours = LoraLinear(nn.Linear(16, 12), 4, LoraConfig(r=4, alpha=8, **variant).scaling, dora="dora" in variant)
    with torch.no_grad():
        ours.base.load_state_dict(peft_layer.base_layer.state_dict())
        ours.lora_A.copy_(peft_layer.lora_A["default"].weight)
        ours.lora_B.copy_(peft_layer.lora_B["default"].weight)
        if "dora" in variant:
            ours.lora_magnitude.copy_(peft_layer.lora_magnitude_vector["default"].weight)
    x = torch.randn(3, 5, 16)
    expected = ref(x)
    assert not torch.allclose(expected, peft_layer.base_layer(x), atol=1e-3)  # the adapter does something
    torch.testing.assert_close(ours(x), expected, atol=1e-5, rtol=1e-5)


def test_scaling_and_dora_formula():
    assert LoraConfig(r=16, alpha=8).scaling == 0.5
    assert LoraConfig(r=16, alpha=8, rslora=True).scaling == 2.0
    torch.manual_seed(0)
    layer = LoraLinear(nn.Linear(8, 6), 2, 1.5, dora=True)
    with torch.no_grad():
        layer.lora_B.normal_()
        layer.lora_magnitude.uniform_(0.5, 2.0)
    w, b = layer.base.weight, layer.base.bias
    updated = w + 1.5 * layer.lora_B @ layer.lora_A
    expected_w = layer.lora_magnitude[:, None] * updated / updated.norm(dim=1, keepdim=True)
    x = torch.randn(4, 8)
    torch.testing.assert_close(layer(x), x @ expected_w.T + b, atol=1e-5, rtol=1e-5)


def test_init_kaiming_a_and_zero_b_and_only_adapters_train():
    model = _model()
    names = add_lora(model, LoraConfig(r=4, train_modules=["final_norm"]))
    layer = model.get_submodule(names[0])
    bound = 1 / math.sqrt(layer.in_features)  # kaiming_uniform(a=sqrt 5) = nn.Linear's default
    assert layer.lora_A.abs().max() <= bound and layer.lora_A.abs().max() > 0.8 * bound
    assert torch.count_nonzero(layer.lora_B) == 0
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n or n.startswith("final_norm.") for n in trainable)
    assert "final_norm.weight" in trainable
    assert not any(n.startswith("head") for n in names)


def test_targets_by_suffix_pattern_and_errors():
    model = _model()
    assert target_names(model, ["q_proj"]) == ["blocks.0.attn.q_proj", "blocks.1.attn.q_proj"]
    assert target_names(model, ["re:blocks\\.1\\.mlp\\..*"]) == [
        "blocks.1.mlp.gate_proj", "blocks.1.mlp.up_proj", "blocks.1.mlp.down_proj"]
    assert len(target_names(model, ["all-linear"])) == 2 * 7
    with pytest.raises(ConfigError, match="matches no projection"):
        target_names(model, ["c_attn"])
    with pytest.raises(ConfigError, match="no module"):
        add_lora(_model(), LoraConfig(train_modules=["lm_head"]))


@pytest.mark.parametrize("variant", [{}, {"dora": True}, {"rslora": True}])
def test_merge_and_unmerge_are_exact(variant):
    model = _model()
    base_logits = model(torch.arange(10)[None]).logits
    add_lora(model, LoraConfig(r=4, alpha=8, **variant))
    _randomise_adapters(model)
    ids = torch.randint(0, 64, (2, 12))
    unmerged = model(ids).logits
    assert not torch.allclose(unmerged[:1, :10], base_logits, atol=1e-3)
    layers = [m for m in model.modules() if isinstance(m, LoraLinear)]
    before = [m.base.weight.clone() for m in layers]
    for m in layers:
        m.merge()
    torch.testing.assert_close(model(ids).logits, unmerged, atol=1e-5, rtol=1e-5)
    for m, w in zip(layers, before):
        m.unmerge()
        torch.testing.assert_close(m.base.weight, w, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(model(ids).logits, unmerged, atol=1e-5, rtol=1e-5)
    merge_lora(model)
    assert not any(isinstance(m, LoraLinear) for m in model.modules())
    torch.testing.assert_close(model(ids).logits, unmerged, atol=1e-5, rtol=1e-5)
    assert set(model.state_dict()) == set(_model().state_dict())  # a plain model again


def test_disabled_adapters_give_the_base():
    model = _model()
    ids = torch.randint(0, 64, (1, 9))
    base = model(ids).logits
    add_lora(model, LoraConfig(r=2, dora=True))
    _randomise_adapters(model)
    with lora_disabled(model):
        torch.testing.assert_close(model(ids).logits, base)
    assert not torch.allclose(model(ids).logits, base, atol=1e-3)


def test_qlora_forward_is_dequantized_base_plus_lora():
    model = _model(d_model=64, d_ff=128, head_dim=16)
    quantize_model(model, "nf4", include_head=False)
    reference = _model(d_model=64, d_ff=128, head_dim=16)
    with torch.no_grad():  # the reference holds the dequantized weights as plain nn.Linear
        for name, module in model.named_modules():
            if hasattr(module, "dequantize"):
                reference.get_submodule(name).weight.copy_(module.dequantize())
    add_lora(model, LoraConfig(r=4))
    add_lora(reference, LoraConfig(r=4))
    _randomise_adapters(model)
    _randomise_adapters(reference)
    for (_, ours), (_, ref) in zip(model.named_modules(), reference.named_modules()):
        if isinstance(ours, LoraLinear):
            with torch.no_grad():
                ref.lora_A.copy_(ours.lora_A)
    ids = torch.randint(0, 64, (2, 10))
    torch.testing.assert_close(model(ids).logits, reference(ids).logits, atol=1e-4, rtol=1e-4)
    loss = model(ids, ids).loss
    loss.backward()  # gradients reach the adapters through the frozen NF4 base
    assert all(m.lora_A.grad is not None for m in model.modules() if isinstance(m, LoraLinear))
    merge_lora(model)  # QLoRA merges into a dense layer from the dequantized weight
    torch.testing.assert_close(model(ids).logits, reference(ids).logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("variant", [{}, {"dora": True}])
def test_the_decode_step_reads_lora_layers_merged(variant):
    """The one-token decode step folds each adapter into a fused dense matrix (q/k/v and gate/up too) and
    decodes what the wrapped model computes; with adapters off it decodes the base; a quantized base stays
    unmerged (called as modules)."""
    from slmkit.infer import ModelRunner
    from slmkit.quant.kernels import DenseKernel, ModuleKernel

    model = _model(norm="rmsnorm", mlp="swiglu", positions="rope")
    add_lora(model, LoraConfig(r=4, alpha=8, targets=["all-linear"], **variant))
    _randomise_adapters(model)
    ids = torch.randint(0, model.config.vocab_size, (2, 10), generator=torch.Generator().manual_seed(3))

    def decoded(runner):
        cache = runner.new_cache(2, 16)
        first = runner.forward(ids[:, :4], cache)
        return torch.stack([first] + [runner.forward(ids[:, t:t + 1], cache) for t in range(4, 10)], 1)

    with torch.no_grad():
        runner = ModelRunner(model)
        assert isinstance(runner.fast.layers[0].qkv, DenseKernel) and isinstance(runner.fast.layers[0].down, DenseKernel)
        torch.testing.assert_close(decoded(runner), model(ids).logits[:, 3:], rtol=1e-4, atol=1e-4)
        with lora_disabled(model):
            base = decoded(ModelRunner(model))
            torch.testing.assert_close(base, model(ids).logits[:, 3:], rtol=1e-4, atol=1e-4)
        assert not torch.allclose(base, decoded(runner), atol=1e-3)  # the adapters change the logits
    quantized = _model(norm="rmsnorm", mlp="swiglu", positions="rope")
    quantize_model(quantized, "nf4")
    add_lora(quantized, LoraConfig(r=4, alpha=8, targets=["all-linear"], **variant))
    assert isinstance(ModelRunner(quantized).fast.layers[0].qkv, ModuleKernel)
