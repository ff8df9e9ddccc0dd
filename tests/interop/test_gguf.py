"""GGUF export and import for llama, qwen3, qwen3moe and gpt2: exact round trips (weights, config, tokenizer ids),
transformers' own GGUF reader giving our logits (an independent check of names, layouts and the llama q/k
permutation), quantized tensors equal to gguf-py's reference quantization, the ollama Modelfile, refusals of
what GGUF cannot carry, and the `slm export --format gguf` / `slm generate FILE.gguf` round trip."""

from __future__ import annotations

import dataclasses
import json

import gguf
import numpy as np
import pytest
import torch

from slmkit.cli import main
from slmkit.errors import CheckpointError
from slmkit.infer import Generator
from slmkit.interop.gguf_file import export_gguf, import_gguf, read_gguf
from slmkit.interop.hf_config import config_to_hf, export_architecture
from slmkit.interop.ollama_modelfile import go_template, modelfile_text
from slmkit.model import Decoder, ModelConfig, save_pretrained
from slmkit.tokenizer import train_bpe_from_texts
from slmkit.tokenizer.chat_template import with_default_chat_template
from tests.serve.tiny_run import TEXTS

FAMILIES = {
    "llama": dict(qk_norm=False, head_dim=16),
    "qwen3": dict(qk_norm=True, head_dim=32),  # head_dim * heads != d_model, as in Qwen3
    "qwen3moe": dict(qk_norm=True, head_dim=16, n_experts=4, moe_top_k=2, moe_d_ff=32),
    "gpt2": dict(norm="layernorm", mlp="gelu", positions="learned", attn_qkv_bias=True, attn_out_bias=True,
                 mlp_bias=True, n_kv_heads=4, norm_eps=1e-5),
}
SAMPLES = ["Once upon a time there was a little cat.", "Café, naïve, 世界 and 🙂!", "The end.<|endoftext|>Tom ran",
           "  spaces   and\nnew lines\n\n", "12345 apples, 6.7 pears"]


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe_from_texts(TEXTS, 400)


def tiny(tokenizer, family: str, **overrides) -> Decoder:
    fields = {"d_model": 64, "d_ff": 128, "n_kv_heads": 2, **FAMILIES[family], **overrides}
    torch.manual_seed(len(family))
    config = ModelConfig(vocab_size=tokenizer.vocab_size, n_layers=2, n_heads=4, max_seq_len=128,
                         tie_embeddings=True, **fields)
    model = Decoder(config).eval()
    with torch.no_grad():  # norms away from 1 so a swapped or missing norm tensor shows
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.3)
    return model


def logits(model, tokenizer, text: str = SAMPLES[0]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([tokenizer.encode(text)])).logits


@pytest.mark.parametrize("family", FAMILIES)
def test_round_trip_is_exact(family, tokenizer, tmp_path):
    model = tiny(tokenizer, family)
    path = export_gguf(model, tokenizer, tmp_path / "m.gguf")
    back, tok, arch = import_gguf(path)
    assert arch == family and back.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key
    assert all(tok.encode(t) == tokenizer.encode(t) for t in SAMPLES)
    again, _, _ = import_gguf(export_gguf(back, tok, tmp_path / "again.gguf"))
    assert all(torch.equal(again.state_dict()[k], v) for k, v in back.state_dict().items())


@pytest.mark.parametrize("family", FAMILIES)
def test_transformers_gguf_reader_gives_our_logits(family, tokenizer, tmp_path):
    from transformers import AutoConfig, AutoModelForCausalLM

    model = tiny(tokenizer, family)
    export_gguf(model, tokenizer, tmp_path / "m.gguf")
    # transformers' GGUF reader maps only some keys (not Qwen3's head_dim or GPT-2's n_inner), so it gets the
    # config from our HF export; the tensors - names, layouts, the llama permutation - come from the file.
    config = AutoConfig.for_model(**config_to_hf(model.config, export_architecture(model.config)))
    theirs = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="m.gguf", config=config,
                                                  torch_dtype=torch.float32).eval()
    ids = torch.tensor([tokenizer.encode(SAMPLES[0] + " " + SAMPLES[1])])
    with torch.no_grad():
        torch.testing.assert_close(theirs(ids).logits, model(ids).logits, atol=1e-5, rtol=1e-5)


def test_transformers_reads_our_tokenizer_id_for_id(tokenizer, tmp_path):
    from transformers import AutoTokenizer

    export_gguf(tiny(tokenizer, "llama"), tokenizer, tmp_path / "m.gguf")
    theirs = AutoTokenizer.from_pretrained(tmp_path, gguf_file="m.gguf")
    for text in SAMPLES:
        assert theirs.encode(text, add_special_tokens=False) == tokenizer.encode(text), text


@pytest.mark.parametrize("quant, ggml_type", [("q8_0", "Q8_0"), ("q4_0", "Q4_0"), ("bf16", "BF16"), ("f16", "F16")])
def test_quantized_tensors_are_gguf_py_reference_blocks(quant, ggml_type, tokenizer, tmp_path):
    model = tiny(tokenizer, "qwen3", d_ff=100)  # ffn_down's rows (100 values) are not whole 32-value blocks
    path = export_gguf(model, tokenizer, tmp_path / "m.gguf", quant=quant)
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(path).tensors}
    assert types["blk.0.attn_q.weight"] == ggml_type and types["token_embd.weight"] == ggml_type
    assert types["blk.0.attn_norm.weight"] == types["blk.0.attn_q_norm.weight"] == "F32"
    assert types["blk.0.ffn_down.weight"] == ("F16" if quant in ("q8_0", "q4_0") else ggml_type)
    _, tensors = read_gguf(path)
    weight = model.state_dict()["blocks.0.attn.q_proj.weight"].numpy()
    kind = gguf.GGMLQuantizationType[ggml_type]
    expected = gguf.quants.dequantize(gguf.quants.quantize(weight, kind), kind)
    np.testing.assert_array_equal(tensors["blk.0.attn_q.weight"], expected)
    back, _, _ = import_gguf(path)
    tolerance = {"q8_0": 0.05, "q4_0": 0.6, "bf16": 0.05, "f16": 0.01}[quant]
    assert (logits(back, tokenizer) - logits(model, tokenizer)).abs().max() < tolerance


@pytest.mark.parametrize("change, reason", [
    (dict(moe_norm_topk_prob=False), "always renormalises the top-k"),
    (dict(n_shared_experts=1), "n_shared_experts=0"),
    (dict(rope_scaling="ntk", rope_scaling_factor=2.0), "rope_scaling='ntk'"),
    (dict(rope_scaling="llama3", rope_scaling_factor=8.0), "rope_scaling='llama3'"),  # llama only
])
def test_models_gguf_cannot_carry_are_refused(change, reason, tokenizer, tmp_path):
    model = tiny(tokenizer, "qwen3moe", **change)
    with pytest.raises(CheckpointError, match=reason):
        export_gguf(model, tokenizer, tmp_path / "m.gguf")
    assert not (tmp_path / "m.gguf").exists()


def test_tokenizers_gguf_cannot_carry_are_refused(tmp_path):
    custom = train_bpe_from_texts(TEXTS, 300, pattern=r"\w+|\s+|[^\w\s]+")
    model = tiny(custom, "llama")
    with pytest.raises(CheckpointError, match="regex is custom"):
        export_gguf(model, custom, tmp_path / "m.gguf")
    llama3 = train_bpe_from_texts(TEXTS, 300, pattern="llama3")
    with pytest.raises(CheckpointError, match="ignore_merges"):
        export_gguf(tiny(llama3, "llama"), llama3, tmp_path / "m.gguf")


def test_modelfile_translates_chatml_and_passes_raw_prompts_through(tokenizer):
    chat, _ = with_default_chat_template(tokenizer)
    template = go_template(chat)
    assert template == ('{{- range .Messages }}{{ if eq .Role "system" }}<|im_start|>system\n{{ .Content }}'
                        '<|im_end|>\n{{ else if eq .Role "user" }}<|im_start|>user\n{{ .Content }}<|im_end|>\n'
                        '{{ else if eq .Role "assistant" }}<|im_start|>assistant\n{{ .Content }}<|im_end|>\n'
                        '{{ end }}{{ end }}<|im_start|>assistant\n')
    text = modelfile_text(chat, "sft.gguf", 256)
    assert text.splitlines()[1] == "FROM ./sft.gguf" and 'PARAMETER stop "<|im_end|>"' in text
    assert "PARAMETER num_ctx 256" in text and "PARAMETER temperature 0" in text
    raw = modelfile_text(tokenizer, "demo.gguf", 128)
    assert 'TEMPLATE """{{ .Prompt }}"""' in raw and 'PARAMETER stop "<|endoftext|>"' in raw


def test_export_cli_writes_gguf_and_modelfile_that_generate_reads(tokenizer, tmp_path, capsys):
    model = tiny(tokenizer, "qwen3")
    tok_dir = tmp_path / "tok"
    tokenizer.save(tok_dir)
    save_pretrained(model, tmp_path / "run", tokenizer_dir=tok_dir)
    assert main(["export", str(tmp_path / "run"), "--format", "gguf", "--out", str(tmp_path / "demo.gguf")]) == 0
    assert (tmp_path / "demo.Modelfile").read_text().startswith("# ollama create")
    capsys.readouterr()
    args = ["--prompt", "Once upon a time", "--temperature", "0", "--max-new-tokens", "12"]
    assert main(["generate", str(tmp_path / "run"), *args]) == 0
    from_dir = capsys.readouterr().out
    assert main(["generate", str(tmp_path / "demo.gguf"), *args]) == 0
    assert capsys.readouterr().out == from_dir
    (tmp_path / "valid.txt").write_text("<|endoftext|>".join(SAMPLES[:2] + TEXTS[:3]))
    for name, model_path in (("dir", tmp_path / "run"), ("file", tmp_path / "demo.gguf")):
        assert main(["eval", f"{name}={model_path}", "--text", str(tmp_path / "valid.txt"), "--no-progress",
                     "--report", str(tmp_path / f"report-{name}")]) == 0
    scores = [json.loads((tmp_path / f"report-{n}" / "results.json").read_text())["results"][n]["text"]
              for n in ("dir", "file")]
    assert scores[0]["bits_per_byte"] == pytest.approx(scores[1]["bits_per_byte"], rel=1e-6)
    assert main(["export", str(tmp_path / "run"), "--format", "gguf", "--out", str(tmp_path / "demo")]) == 1
    assert "name it NAME.gguf" in capsys.readouterr().err


def test_a_corrupt_file_is_one_line(tmp_path, capsys):
    (tmp_path / "bad.gguf").write_bytes(b"GGUF" + b"\x00" * 20)
    assert main(["generate", str(tmp_path / "bad.gguf"), "--prompt", "x"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bad.gguf" in err and err.count("\n") == 1


LLAMA3_ROPE = dict(rope_theta=500000.0, rope_scaling="llama3", rope_scaling_factor=8.0, rope_original_max_seq_len=32,
                   rope_low_freq_factor=1.0, rope_high_freq_factor=4.0)


YARN_ROPE = dict(rope_scaling="yarn", rope_scaling_factor=4.0, rope_original_max_seq_len=32)


@pytest.mark.parametrize("rope", [dict(rope_theta=500000.0, rope_scaling="linear", rope_scaling_factor=2.0),
                                  LLAMA3_ROPE, YARN_ROPE])
def test_rope_settings_survive(rope, tokenizer, tmp_path):
    """Every field llama.cpp reads is written: the import rebuilds the same config, field by field."""
    model = tiny(tokenizer, "llama", **rope)
    back, _, _ = import_gguf(export_gguf(model, tokenizer, tmp_path / "m.gguf"))
    assert dataclasses.asdict(back.config) == dataclasses.asdict(model.config)
    torch.testing.assert_close(logits(back, tokenizer), logits(model, tokenizer), rtol=0, atol=0)


def test_chat_and_serve_take_a_gguf_file_as_the_directory(tokenizer, tmp_path, capsys, monkeypatch):
    import io
    import sys

    import httpx

    from tests.serve.conftest import ServerProcess

    model = tiny(tokenizer, "llama", init_std=0.2)
    tokenizer.save(tmp_path / "tok")
    save_pretrained(model, tmp_path / "run", tokenizer_dir=tmp_path / "tok")
    export_gguf(model, tokenizer, tmp_path / "m.gguf")
    replies = []
    for path in (tmp_path / "run", tmp_path / "m.gguf"):
        monkeypatch.setattr(sys, "stdin", io.StringIO("Hello\nTell me a story\n"))
        assert main(["chat", str(path), "--max-new-tokens", "6", "--temperature", "0"]) == 0
        replies.append(capsys.readouterr().out)
    assert replies[0] == replies[1]
    server = ServerProcess(tmp_path / "m.gguf", tmp_path / "server.log")
    try:
        body = {"prompt": "Once upon a time", "max_tokens": 8, "temperature": 0, "ignore_eos": True}
        served = httpx.post(server.url + "/v1/completions", json=body, timeout=60).json()["choices"][0]["text"]
    finally:
        server.stop()
    expected = Generator(model, tokenizer, eos_ids=set()).generate("Once upon a time", max_new_tokens=8,
                                                                   temperature=0).text
    assert served == expected


def test_a_converters_llama3_rope_freqs_without_our_keys_is_read_as_llama_3s_rule(tokenizer, tmp_path):
    """llama.cpp's converter writes Llama 3.x's scaling as rope_freqs alone; drop our keys to get such a file."""
    model = tiny(tokenizer, "llama", rope_scaling="llama3", rope_scaling_factor=32.0, rope_original_max_seq_len=8192,
                 rope_theta=500000.0)
    export_gguf(model, tokenizer, tmp_path / "ours.gguf")
    reader = gguf.GGUFReader(tmp_path / "ours.gguf")
    writer = gguf.GGUFWriter(tmp_path / "converted.gguf", "llama")
    for name, field in reader.fields.items():
        if name.startswith(("slmkit.", "GGUF.", "general.architecture")):
            continue
        value = field.contents()
        kind = field.types[0]
        if kind == gguf.GGUFValueType.ARRAY:
            writer.add_key_value(name, value, kind, sub_type=field.types[-1])
        else:
            writer.add_key_value(name, value, kind)
    for t in reader.tensors:
        writer.add_tensor(t.name, np.asarray(t.data), raw_dtype=t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    back, _, _ = import_gguf(tmp_path / "converted.gguf")
    assert dataclasses.asdict(back.config) == dataclasses.asdict(model.config)
