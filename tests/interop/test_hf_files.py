"""HF directories beyond the happy path: shards, tokenizer pass-through, and clear errors."""

import json

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

from slmkit.errors import CheckpointError
from slmkit.interop import export_hf
from slmkit.loading import load_model, read_model_config
from slmkit.model import Decoder, ModelConfig
from tests.conftest import shared_path


def _tiny_qwen3(path, **overrides):
    torch.manual_seed(0)
    fields = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=8, max_position_embeddings=64)
    model = transformers.Qwen3ForCausalLM(transformers.Qwen3Config(**{**fields, **overrides})).eval()
    return model


def test_sharded_checkpoint_imports(tmp_path):
    hf = _tiny_qwen3(tmp_path)
    hf.save_pretrained(tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    ours, _ = load_model(tmp_path)
    ids = torch.randint(0, 64, (1, 6))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, hf(ids).logits)


def _break(path, change):
    tensors = load_file(str(path / "model.safetensors"))
    change(tensors)
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})


def test_missing_hf_tensor_is_named(tmp_path):
    _tiny_qwen3(tmp_path).save_pretrained(tmp_path)
    _break(tmp_path, lambda t: t.pop("model.layers.1.self_attn.k_norm.weight"))
    with pytest.raises(CheckpointError, match=r"missing tensor 'model\.layers\.1\.self_attn\.k_norm\.weight'"):
        load_model(tmp_path)


def test_mismatched_hf_tensor_names_the_shapes(tmp_path):
    _tiny_qwen3(tmp_path).save_pretrained(tmp_path)
    _break(tmp_path, lambda t: t.__setitem__("model.layers.0.mlp.up_proj.weight", torch.zeros(40, 32)))
    with pytest.raises(CheckpointError, match=r"'blocks\.0\.mlp\.up_proj\.weight' has shape \[40, 32\].*\[48, 32\]"):
        load_model(tmp_path)


def test_unexpected_hf_tensor_is_named(tmp_path):
    _tiny_qwen3(tmp_path).save_pretrained(tmp_path)
    _break(tmp_path, lambda t: t.__setitem__("model.layers.0.mlp.extra.weight", torch.zeros(3)))
    with pytest.raises(CheckpointError, match=r"unexpected tensor 'model\.layers\.0\.mlp\.extra\.weight'"):
        load_model(tmp_path)


def test_unsupported_architecture_and_features(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["MambaForCausalLM"], "model_type": "mamba"}))
    with pytest.raises(CheckpointError, match="unsupported Hugging Face architecture.*Qwen3ForCausalLM"):
        load_model(tmp_path)
    _tiny_qwen3(tmp_path, use_sliding_window=True, sliding_window=16).save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="use_sliding_window"):
        read_model_config(tmp_path)


def test_export_refuses_what_hf_cannot_express(tmp_path):
    model = Decoder(ModelConfig(vocab_size=32, d_model=16, n_layers=1, n_heads=2, d_ff=16, positions="sinusoidal"))
    with pytest.raises(CheckpointError, match="positions='sinusoidal'"):
        export_hf(model, tmp_path / "out")
    moe = Decoder(ModelConfig(vocab_size=32, d_model=16, n_layers=1, n_heads=2, d_ff=16, qk_norm=True,
                              n_experts=2, moe_top_k=1, n_shared_experts=1))
    with pytest.raises(CheckpointError, match="n_shared_experts"):
        export_hf(moe, tmp_path / "out")


def test_export_copies_tokenizer_for_autotokenizer(tmp_path):
    tokenizer_dir = shared_path("qwen3-tokenizer")
    model = Decoder(ModelConfig(vocab_size=151_669, d_model=16, n_layers=1, n_heads=2, n_kv_heads=1, d_ff=16,
                                qk_norm=True))
    model.save_pretrained(tmp_path / "ours", tokenizer_dir=tokenizer_dir)
    loaded, info = load_model(tmp_path / "ours")
    out = export_hf(loaded, tmp_path / "hf", tokenizer_dir=tmp_path / "ours")
    tok = transformers.AutoTokenizer.from_pretrained(out)
    reference = transformers.AutoTokenizer.from_pretrained(tokenizer_dir)
    text = "Once upon a time, a tiny model"
    assert tok(text)["input_ids"] == reference(text)["input_ids"]
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(out)
    ids = torch.tensor([tok(text)["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(hf_model(ids).logits, loaded(ids).logits)


def test_bf16_export_loads(tmp_path):
    torch.manual_seed(0)
    model = Decoder(ModelConfig(vocab_size=32, d_model=16, n_layers=1, n_heads=2, d_ff=16))
    out = export_hf(model, tmp_path / "hf", dtype=torch.bfloat16)
    hf = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    assert type(hf).__name__ == "LlamaForCausalLM"
    torch.testing.assert_close(hf.model.embed_tokens.weight, model.embed.weight.bfloat16().float())


def test_original_gpt2_layout_without_prefix_and_with_mask_buffers(tmp_path):
    """openai-community/gpt2's own file has no 'transformer.' prefix and carries attn.bias buffers."""
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=4,
                                                              n_positions=32)).eval()
    hf.save_pretrained(tmp_path)
    tensors = {k.removeprefix("transformer."): v for k, v in load_file(str(tmp_path / "model.safetensors")).items()}
    for i in range(2):
        tensors[f"h.{i}.attn.bias"] = torch.tril(torch.ones(1, 1, 32, 32))
    save_file(tensors, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    ours, _ = load_model(tmp_path)
    ids = torch.randint(0, 64, (1, 9))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, hf(ids).logits)


def test_qwen3_moe_fused_expert_layout_imports(tmp_path):
    """transformers 5 keeps experts fused in memory (gate_up_proj [E, 2F, D]); such files import too."""
    torch.manual_seed(0)
    hf = transformers.Qwen3MoeForCausalLM(transformers.Qwen3MoeConfig(
        vocab_size=64, hidden_size=32, intermediate_size=48, moe_intermediate_size=16, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, num_experts=4, num_experts_per_tok=2)).eval()
    hf.save_pretrained(tmp_path)  # writes config.json (and per-expert weights, replaced below)
    state = {k: v.contiguous() for k, v in hf.state_dict().items()}
    assert "model.layers.0.mlp.experts.gate_up_proj" in state
    save_file(state, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    ours, _ = load_model(tmp_path)
    ids = torch.randint(0, 64, (2, 5))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, hf(ids).logits)
