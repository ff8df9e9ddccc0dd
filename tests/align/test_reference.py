"""The reference of a LoRA policy is its base with the adapters switched off, checked by log-probs against the
bare base model; a frozen copy stays put while the policy trains; a precomputed reference reads the batch."""

import pytest
import torch

from slmkit.align.completion_logps import completion_logps, pair_logps
from slmkit.align.reference import Reference
from slmkit.errors import ConfigError
from slmkit.finetune.lora import LoraConfig, add_lora
from slmkit.model import Decoder, ModelConfig
from slmkit.model.loss import IGNORE_INDEX

CONFIG = ModelConfig(vocab_size=97, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8, d_ff=64,
                     max_seq_len=64)


def batch(pairs=3, width=12):
    g = torch.Generator().manual_seed(0)
    out = {}
    for side in ("chosen", "rejected"):
        ids = torch.randint(0, CONFIG.vocab_size, (pairs, width), generator=g)
        labels = torch.roll(ids, -1, dims=1)
        labels[:, :5] = IGNORE_INDEX  # the prompt
        labels[:, -2:] = IGNORE_INDEX  # padding
        out[f"{side}_input_ids"], out[f"{side}_labels"] = ids, labels
        out[f"{side}_length"] = torch.full((pairs,), width - 2)
    return out


def models():
    torch.manual_seed(0)
    base = Decoder(CONFIG).eval()
    policy = Decoder(CONFIG).eval()
    policy.load_state_dict(base.state_dict())
    add_lora(policy, LoraConfig(r=4, alpha=8, targets=["all-linear"]))
    with torch.no_grad():  # trained adapters: B away from zero
        for name, p in policy.named_parameters():
            if name.endswith("lora_B"):
                p.normal_(0, 0.5)
    return base, policy


def test_adapters_off_is_the_bare_base():
    base, policy = models()
    b = batch()
    with torch.no_grad():
        bare_chosen, bare_rejected, _, _ = pair_logps(base, b)
        adapted_chosen, _, _, _ = pair_logps(policy, b)
    ref_chosen, ref_rejected = Reference("adapters_off", policy).logps(b)
    torch.testing.assert_close(ref_chosen, bare_chosen, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ref_rejected, bare_rejected, rtol=1e-5, atol=1e-5)
    assert (adapted_chosen - bare_chosen).abs().min() > 1e-2  # the adapters do change the policy
    assert all(layer.enabled for name, layer in policy.named_modules() if name.endswith("q_proj"))  # back on


def test_completion_logps_equal_full_logits_log_softmax():
    base, _ = models()
    b = batch()
    ids, labels = b["chosen_input_ids"], b["chosen_labels"]
    with torch.no_grad():
        summed, counts = completion_logps(base, ids, labels)
        logp = base(ids).logits.float().log_softmax(-1)
    mask = labels != IGNORE_INDEX
    expected = (logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask).sum(-1)
    torch.testing.assert_close(summed, expected, rtol=1e-5, atol=1e-4)
    assert counts.tolist() == [5, 5, 5]


def test_frozen_copy_and_precomputed():
    base, policy = models()
    b = batch()
    copy = Reference("copy", policy, base)
    with torch.no_grad():
        expected = pair_logps(base, b)[:2]
    for got, want in zip(copy.logps(b), expected):
        torch.testing.assert_close(got, want)
    b["ref_chosen_logps"], b["ref_rejected_logps"] = torch.tensor([1.0, 2, 3]), torch.tensor([4.0, 5, 6])
    assert Reference("precomputed", policy).logps(b)[1].tolist() == [4, 5, 6]


def test_bad_references_are_config_errors():
    base, policy = models()
    with pytest.raises(ConfigError, match="needs a LoRA policy"):
        Reference("adapters_off", base)
    with pytest.raises(ConfigError, match="needs the frozen copy"):
        Reference("copy", policy)
    with pytest.raises(ConfigError, match="no reference log-probs"):
        Reference("precomputed", policy).logps(batch())
