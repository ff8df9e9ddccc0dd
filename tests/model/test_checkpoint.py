"""Our checkpoint directory: round trip, atomic replacement, tokenizer pass-through, and errors that
name the tensor at fault."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from slmkit.errors import CheckpointError
from slmkit.loading import load_model
from slmkit.model import Decoder

from .tiny import FAMILY_CONFIGS, tiny_config


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = Decoder(tiny_config()).eval()
    model.save_pretrained(tmp_path / "ckpt")
    return model, tmp_path / "ckpt"


@pytest.mark.parametrize("family", list(FAMILY_CONFIGS))
def test_round_trip_gives_identical_logits(family, tmp_path):
    torch.manual_seed(0)
    model = Decoder(tiny_config(**FAMILY_CONFIGS[family])).eval()
    model.save_pretrained(tmp_path / "m")
    loaded, info = load_model(tmp_path / "m")
    assert info.format == "slmkit" and loaded.config == model.config
    if model.config.tie_embeddings:
        assert loaded.head.weight is loaded.embed.weight
    ids = torch.randint(0, 64, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits, rtol=0, atol=0)


def test_directory_layout(saved):
    _, path = saved
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((path / "config.json").read_text())
    assert config["format"] == "slmkit" and config["d_model"] == 32
    assert not list(path.parent.glob(".ckpt.*"))  # no temporary directories left behind


def test_tokenizer_files_are_copied_and_kept(tmp_path, saved):
    model, path = saved
    tok = tmp_path / "tok"
    tok.mkdir()
    (tok / "tokenizer.json").write_text('{"model": {}}')
    (tok / "tokenizer_config.json").write_text("{}")
    model.save_pretrained(path, tokenizer_dir=tok)
    assert (path / "tokenizer.json").read_text() == '{"model": {}}'
    model.save_pretrained(path)  # re-saving keeps the tokenizer already there
    _, info = load_model(path)
    assert info.tokenizer_path == path / "tokenizer.json"


def _rewrite(path, change):
    tensors = load_file(str(path / "model.safetensors"))
    change(tensors)
    save_file(tensors, str(path / "model.safetensors"))


def test_missing_tensor_is_named(saved):
    _, path = saved
    _rewrite(path, lambda t: t.pop("blocks.1.attn.k_proj.weight"))
    with pytest.raises(CheckpointError, match=r"missing tensor 'blocks\.1\.attn\.k_proj\.weight' \(shape \[16, 32\]\)"):
        load_model(path)


def test_mismatched_tensor_names_both_shapes(saved):
    _, path = saved
    _rewrite(path, lambda t: t.__setitem__("blocks.0.mlp.up_proj.weight", torch.zeros(50, 32)))
    with pytest.raises(CheckpointError, match=r"'blocks\.0\.mlp\.up_proj\.weight' has shape \[50, 32\].*expects \[48, 32\]"):
        load_model(path)


def test_unexpected_tensor_is_named(saved):
    _, path = saved
    _rewrite(path, lambda t: t.__setitem__("blocks.9.extra", torch.zeros(2)))
    with pytest.raises(CheckpointError, match=r"unexpected tensor 'blocks\.9\.extra'"):
        load_model(path)


def test_not_a_model_directory(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "nope")
    (tmp_path / "config.json").write_text('{"hello": 1}')
    with pytest.raises(CheckpointError, match="neither an slmkit checkpoint nor a Hugging Face"):
        load_model(tmp_path)


def test_pickled_weights_are_refused(tmp_path):
    (tmp_path / "config.json").write_text('{"architectures": ["LlamaForCausalLM"], "hidden_size": 8, '
                                          '"num_attention_heads": 2, "num_hidden_layers": 1, "vocab_size": 8, '
                                          '"intermediate_size": 8}')
    (tmp_path / "pytorch_model.bin").write_bytes(b"not unpickled")
    with pytest.raises(CheckpointError, match="never unpickles"):
        load_model(tmp_path)
