"""PEFT interop both ways: PeftModel.from_pretrained on our exported adapter gives our logits (and not the
base's, since PEFT silently runs the bare base when it finds no keys), and PEFT's adapters load into slmkit."""

import peft
import pytest
import torch
from transformers import AutoModelForCausalLM

from slmkit.finetune.lora import LoraConfig, LoraLinear, add_lora, trainable_state
from slmkit.finetune.peft_format import load_peft_into, to_peft, write_peft_adapter
from slmkit.interop.hf_export import export_hf
from slmkit.loading import load_model
from slmkit.model import Decoder
from tests.model.tiny import FAMILY_CONFIGS, tiny_config

FAMILIES = ["qwen3", "llama", "gpt2"]


def _base(family, tmp_path):
    torch.manual_seed(0)
    model = Decoder(tiny_config(**FAMILY_CONFIGS[family])).eval()
    export_hf(model, tmp_path / "hf")
    return model


def _randomise(model):
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, LoraLinear):
                m.lora_B.copy_(torch.randn(m.lora_B.shape, generator=gen) * 0.2)
                if m.lora_magnitude is not None:
                    m.lora_magnitude.mul_(1.0 + 0.3 * torch.rand(m.lora_magnitude.shape, generator=gen))


def _meta(cfg, modules):
    return {"lora": cfg.__dict__ | {"targets": list(cfg.targets)}, "modules": modules,
            "base": {"path": "hf", "fingerprint": "x", "vocab_size": 64}}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("variant", [{}, {"dora": True, "rslora": True}])
def test_our_adapter_loads_in_peft_with_our_logits(family, variant, tmp_path):
    model = _base(family, tmp_path)
    ids = torch.randint(0, 64, (2, 11))
    cfg = LoraConfig(r=4, alpha=8, targets=["all-linear"], **variant)
    modules = add_lora(model, cfg)
    _randomise(model)
    ours = model(ids).logits
    config, tensors = to_peft(_meta(cfg, modules), trainable_state(model), model.config)
    write_peft_adapter(tmp_path / "peft", config, tensors)

    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    base_logits = hf(ids).logits
    with _no_missing_key_warning():
        adapted = peft.PeftModel.from_pretrained(hf, tmp_path / "peft").eval()
    theirs = adapted(ids).logits
    assert not torch.allclose(theirs, base_logits, atol=1e-3)  # PEFT really applied the adapter
    torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=1e-4)


class _no_missing_key_warning:
    def __enter__(self):
        import warnings
        self._catch = warnings.catch_warnings(record=True)
        self.records = self._catch.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self._catch.__exit__(*exc)
        missing = [str(w.message) for w in self.records if "missing adapter keys" in str(w.message)]
        assert not missing, missing[0][:300]


@pytest.mark.parametrize("family", FAMILIES)
def test_peft_adapter_loads_into_slmkit(family, tmp_path):
    _base(family, tmp_path)
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    ids = torch.randint(0, 64, (2, 9))
    base_logits = hf(ids).logits
    torch.manual_seed(5)
    adapted = peft.get_peft_model(hf, peft.LoraConfig(r=4, lora_alpha=16, target_modules="all-linear",
                                                      init_lora_weights=False))
    theirs = adapted(ids).logits.detach()
    assert not torch.allclose(theirs, base_logits, atol=1e-3)
    adapted.save_pretrained(tmp_path / "peft")
    model, _ = load_model(tmp_path / "hf")
    modules = load_peft_into(model, tmp_path / "peft")
    assert len(modules) == 2 * (7 if family != "gpt2" else 6)  # gpt2: c_attn becomes q, k, v
    torch.testing.assert_close(model(ids).logits, theirs, atol=1e-4, rtol=1e-4)
