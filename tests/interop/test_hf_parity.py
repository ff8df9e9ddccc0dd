"""litgpt-style parity: tiny random transformers models of each family, through OUR importer and
exporter, must give the same logits and loss as transformers itself (fp32, CPU)."""

from __future__ import annotations

import json

import pytest
import torch
import transformers

from slmkit.interop import export_hf
from slmkit.loading import load_model

VOCAB = 96


def _qwen3():
    return transformers.Qwen3ForCausalLM(transformers.Qwen3Config(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=12, max_position_embeddings=64, rope_theta=1e6, tie_word_embeddings=False))


def _qwen3_moe():
    return transformers.Qwen3MoeForCausalLM(transformers.Qwen3MoeConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=48, moe_intermediate_size=16, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, num_experts=6, num_experts_per_tok=2,
        norm_topk_prob=True, max_position_embeddings=64, tie_word_embeddings=False))


def _llama():
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5, tie_word_embeddings=True))


def _gpt2():
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64, resid_pdrop=0, embd_pdrop=0, attn_pdrop=0))


FAMILIES = {"qwen3": _qwen3, "qwen3_moe": _qwen3_moe, "llama": _llama, "gpt2": _gpt2}


def _randomize(model: torch.nn.Module) -> torch.nn.Module:
    """Give norms and biases random values too, so a swapped or dropped one cannot go unnoticed."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "ln_" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def _targets(ids: torch.Tensor) -> torch.Tensor:
    """Our targets are the ids shifted left; HF shifts `labels` internally."""
    return torch.cat([ids[:, 1:], torch.full_like(ids[:, :1], -100)], dim=1)


@pytest.fixture(scope="module", params=list(FAMILIES))
def hf_model_dir(request, tmp_path_factory):
    torch.manual_seed(0)
    model = _randomize(FAMILIES[request.param]())
    path = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(path)
    return request.param, model, path


def test_import_matches_transformers(hf_model_dir):
    family, hf_model, path = hf_model_dir
    ours, info = load_model(path)
    assert info.format == "hf"
    ids = torch.randint(0, VOCAB, (2, 11), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = hf_model(ids, labels=ids)
        got = ours(ids, _targets(ids))
    torch.testing.assert_close(got.logits, expected.logits)
    torch.testing.assert_close(got.loss, expected.loss)


def test_export_loads_in_transformers(hf_model_dir, tmp_path):
    family, _, path = hf_model_dir
    ours, _ = load_model(path)
    with torch.no_grad():  # move away from the imported values so the check is of our export
        for p in ours.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    out = export_hf(ours, tmp_path / "hf")
    reloaded, loading_info = transformers.AutoModelForCausalLM.from_pretrained(out, output_loading_info=True)
    assert not loading_info["missing_keys"] and not loading_info["unexpected_keys"], loading_info
    assert type(reloaded).__name__ == json.loads((out / "config.json").read_text())["architectures"][0]
    ids = torch.randint(0, VOCAB, (2, 9), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(reloaded.eval()(ids).logits, ours(ids).logits)


def test_moe_aux_loss_matches_transformers(tmp_path):
    from transformers.models.qwen3_moe.modeling_qwen3_moe import load_balancing_loss_func

    torch.manual_seed(0)
    hf_model = _randomize(_qwen3_moe())
    hf_model.save_pretrained(tmp_path)
    ours, _ = load_model(tmp_path)
    ids = torch.randint(0, VOCAB, (2, 7), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # padding must be excluded the same way
    with torch.no_grad():
        expected = hf_model(ids, attention_mask=mask, output_router_logits=True)
        reference = load_balancing_loss_func(expected.router_logits, 6, 2, mask)
        got = ours(ids, attention_mask=mask)
    torch.testing.assert_close(expected.aux_loss, reference)
    torch.testing.assert_close(got.load_balancing_loss, reference)
    torch.testing.assert_close(got.aux_loss, hf_model.config.router_aux_loss_coef * reference)


def test_round_trip_through_our_format(hf_model_dir, tmp_path):
    _, hf_model, path = hf_model_dir
    imported, _ = load_model(path)
    imported.save_pretrained(tmp_path / "ours")
    reloaded, info = load_model(tmp_path / "ours")
    assert info.format == "slmkit"
    ids = torch.randint(0, VOCAB, (1, 8))
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, hf_model(ids).logits)
