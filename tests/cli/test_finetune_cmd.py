"""`slm finetune` / `slm export` / `slm generate` on an adapter directory, through the CLI's main()."""

import json

import torch

from slmkit.cli import main
from slmkit.data.sources.instructions import generate_instruction_examples
from slmkit.model import Decoder, ModelConfig
from slmkit.tokenizer import train_bpe_from_texts


def _base(root):
    examples = list(generate_instruction_examples(12, seed=1))
    tok = train_bpe_from_texts([m["content"] for e in examples for m in e["messages"]], vocab_size=500,
                               special_tokens=["<|endoftext|>"])
    tok.save(root / "tok")
    torch.manual_seed(0)
    Decoder(ModelConfig(vocab_size=tok.vocab_size, d_model=32, n_layers=1, n_heads=2, n_kv_heads=1, head_dim=16,
                        d_ff=64, max_seq_len=512)).save_pretrained(root / "base", tokenizer_dir=root / "tok")
    (root / "sft.jsonl").write_text("".join(json.dumps(e) + "\n" for e in examples))


def test_finetune_then_generate_and_export(tmp_path, capsys):
    _base(tmp_path)
    run = tmp_path / "sft"
    code = main(["finetune", "configs/sft-lora.yaml", f"base={tmp_path / 'base'}", f"data.train={tmp_path / 'sft.jsonl'}",
                 "data.eval=null", "data.eval_fraction=0.25", f"train.out_dir={run}", "train.max_steps=2",
                 "train.max_minutes=null",
                 "train.time_schedule=false", "train.warmup_steps=0", "train.batch_size=2", "train.eval_every=0",
                 "train.sample_tokens=0", "train.plots=false", "train.tensorboard=false", "train.precision=fp32",
                 "--no-progress"])
    assert code == 0 and (run / "adapter.json").is_file()
    assert "finished at step 2" in capsys.readouterr().out
    assert main(["generate", str(run), "--prompt", "Once", "--max-new-tokens", "3", "--temperature", "0"]) == 0
    assert main(["export", str(run), "--out", str(tmp_path / "x")]) == 1  # an adapter needs --merge or peft
    assert "add --merge" in capsys.readouterr().err
    assert main(["export", str(run), "--merge", "--out", str(tmp_path / "merged")]) == 0
    assert (tmp_path / "merged" / "model.safetensors").is_file()
    assert main(["generate", str(tmp_path / "merged"), "--prompt", "Once", "--max-new-tokens", "2"]) == 0
    assert main(["export", str(tmp_path / "base"), "--format", "peft", "--out", str(tmp_path / "p")]) == 1
    assert main(["export", str(run), "--format", "peft", "--out", str(tmp_path / "p")]) == 0
    assert (tmp_path / "p" / "adapter_config.json").is_file() and (tmp_path / "p" / "base" / "config.json").is_file()


def test_finetune_rejects_a_bad_recipe(tmp_path, capsys):
    assert main(["finetune", "configs/sft-lora.yaml", "lora.rank=4"]) == 1
    assert "unknown config key 'lora.rank'" in capsys.readouterr().err
    assert main(["finetune", "configs/sft-lora.yaml", f"base={tmp_path / 'nowhere'}", "method=adapter"]) == 1


def test_finetune_a_gguf_base(tmp_path, capsys):
    """A model from the llama.cpp ecosystem fine-tunes here: the base is a .gguf file."""
    _base(tmp_path)
    assert main(["export", str(tmp_path / "base"), "--format", "gguf", "--out", str(tmp_path / "base.gguf")]) == 0
    run = tmp_path / "sft-gguf"
    code = main(["finetune", "configs/sft-lora.yaml", f"base={tmp_path / 'base.gguf'}",
                 f"data.train={tmp_path / 'sft.jsonl'}", "data.eval=null", "data.eval_fraction=0.25",
                 f"train.out_dir={run}", "train.max_steps=2", "train.max_minutes=null", "train.time_schedule=false",
                 "train.warmup_steps=0", "train.batch_size=2", "train.eval_every=0", "train.sample_tokens=0",
                 "train.plots=false", "train.tensorboard=false", "train.precision=fp32", "--no-progress"])
    assert code == 0 and (run / "adapter.json").is_file()
    capsys.readouterr()
    assert main(["generate", str(run), "--prompt", "Once", "--max-new-tokens", "3", "--temperature", "0"]) == 0
    assert main(["export", str(run), "--merge", "--format", "gguf", "--out", str(tmp_path / "sft.gguf")]) == 0
    assert (tmp_path / "sft.gguf").is_file() and (tmp_path / "sft.Modelfile").is_file()
