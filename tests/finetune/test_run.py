"""`finetune` end to end on a tiny base: LoRA, QLoRA and full runs, adapter-only checkpoints, bitwise resume,
loading with the base (and refusing the wrong one), merge and PEFT export."""

import json

import peft
import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM

from slmkit.errors import CheckpointError, DataError
from slmkit.finetune.adapter import read_adapter_tensors
from slmkit.finetune.export import export_merged, export_peft
from slmkit.finetune.loading import load_for_use
from slmkit.finetune.run import finetune
from slmkit.loading import load_model
from slmkit.model import Decoder
from tests.finetune.tiny_workspace import finetune_config, make_workspace, quiet


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("ft"))


def test_lora_run_writes_an_adapter_and_checkpoints_hold_only_it(workspace, tmp_path):
    result = finetune(finetune_config(workspace, "lora", tmp_path / "run"), log=quiet)
    run = tmp_path / "run"
    assert result["status"] == "finished" and result["val_loss"] > 0
    meta = json.loads((run / "adapter.json").read_text())
    assert meta["vocab_size"] == meta["base"]["vocab_size"] + 2  # ChatML tokens were added
    tensors = read_adapter_tensors(run)
    assert any(k.endswith("lora_A") for k in tensors) and "embed.weight" in tensors  # (the head is tied)
    assert not any(".base." in k for k in tensors)  # the frozen base is never saved
    ckpt = sorted((run / "checkpoints").iterdir())[-1]
    assert not (ckpt / "model.safetensors").exists() and (ckpt / "adapter.safetensors").is_file()
    base_state = load_model(workspace / "base")[0].state_dict()
    model, tok, eos = load_for_use(run, merge=False)
    for name, p in model.named_parameters():  # the base weights under the adapters are untouched
        if ".base." in name:
            torch.testing.assert_close(p, base_state[name.replace(".base.", ".")], rtol=0, atol=0)
    assert tok.chat_template and tok.eos_id in eos


def test_lora_resume_is_bitwise_exact(workspace, tmp_path):
    finetune(finetune_config(workspace, "lora", tmp_path / "straight"), log=quiet)
    finetune(finetune_config(workspace, "lora", tmp_path / "cut", "train.max_steps=2"), log=quiet)
    finetune(finetune_config(workspace, "lora", tmp_path / "cut", "train.resume=auto"), log=quiet)
    a, b = read_adapter_tensors(tmp_path / "straight"), read_adapter_tensors(tmp_path / "cut")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_adapter_on_another_base_is_refused(workspace, tmp_path):
    finetune(finetune_config(workspace, "lora", tmp_path / "run", "train.max_steps=1"), log=quiet)
    other = Decoder(load_model(workspace / "base")[0].config)
    other.save_pretrained(tmp_path / "other", tokenizer_dir=workspace / "tok")
    with pytest.raises(CheckpointError, match="fingerprint"):
        load_for_use(tmp_path / "run", base=tmp_path / "other")


def test_merge_and_peft_export_give_the_adapter_logits(workspace, tmp_path):
    finetune(finetune_config(workspace, "lora", tmp_path / "run", "lora.dora=true"), log=quiet)
    adapted, _, _ = load_for_use(tmp_path / "run", merge=False)
    ids = torch.randint(0, 300, (1, 20))
    expected = adapted(ids).logits
    base_logits = load_model(workspace / "base")[0](ids).logits
    assert not torch.allclose(expected[..., :base_logits.shape[-1]], base_logits, atol=1e-3)
    out, _ = export_merged(tmp_path / "run", tmp_path / "merged", "slmkit")
    merged, _ = load_model(out)
    torch.testing.assert_close(merged(ids).logits, expected, atol=1e-4, rtol=1e-4)
    out = export_peft(tmp_path / "run", tmp_path / "peft")
    hf = AutoModelForCausalLM.from_pretrained(out / "base").eval()
    theirs = peft.PeftModel.from_pretrained(hf, out).eval()(ids).logits
    torch.testing.assert_close(theirs, expected, atol=1e-4, rtol=1e-4)
    reloaded, _, _ = load_for_use(out)  # and the PEFT directory loads back into slmkit
    torch.testing.assert_close(reloaded(ids).logits, expected, atol=1e-4, rtol=1e-4)


def test_qlora_and_full_runs(workspace, tmp_path):
    finetune(finetune_config(workspace, "qlora", tmp_path / "q", "train.gradient_checkpointing=true",
                     "train.precision=bf16"), log=quiet)
    meta = json.loads((tmp_path / "q" / "adapter.json").read_text())
    assert meta["quantization"] == "nf4"
    model, _, _ = load_for_use(tmp_path / "q", merge=False)
    assert any(type(m).__name__ == "NF4Linear" for m in model.modules())
    finetune(finetune_config(workspace, "full", tmp_path / "full"), log=quiet)
    with safe_open(str(tmp_path / "full" / "model.safetensors"), framework="pt") as f:
        assert "blocks.0.attn.q_proj.weight" in f.keys()
    full, _ = load_model(tmp_path / "full")
    base, _ = load_model(workspace / "base")
    assert full.config.vocab_size == base.config.vocab_size + 2
    assert not torch.equal(full.blocks[0].attn.q_proj.weight, base.blocks[0].attn.q_proj.weight)


def test_data_without_assistant_turns_is_an_error(workspace, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    with pytest.raises(DataError):
        finetune(finetune_config(workspace, "lora", tmp_path / "run", f"data.train={bad}"), log=quiet)



@pytest.mark.parametrize("token_rows", ["new", "all"])
def test_added_chat_tokens_learn_alone_unless_every_row_is_asked_for(workspace, tmp_path, token_rows):
    """lora.token_rows: new (the default) trains only the added ChatML rows of the tied embedding; the base's
    rows stay bit for bit (finetune/token_rows.py says why); all trains every row."""
    finetune(finetune_config(workspace, "lora", tmp_path / "run", f"lora.token_rows={token_rows}"), log=quiet)
    base = load_model(workspace / "base")[0].state_dict()["embed.weight"]
    trained = read_adapter_tensors(tmp_path / "run")["embed.weight"]
    vocab = base.shape[0]
    assert trained.shape[0] == vocab + 2
    assert torch.equal(trained[:vocab], base) == (token_rows == "new")
    assert json.loads((tmp_path / "run" / "adapter.json").read_text())["lora"]["token_rows"] == token_rows
