"""`slm export DIR --format hf --out OUT` end to end."""

import torch
import transformers

from slmkit.cli import main
from slmkit.model import Decoder, ModelConfig


def test_export_cli_writes_a_transformers_model(tmp_path, capsys):
    torch.manual_seed(0)
    model = Decoder(ModelConfig(vocab_size=48, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8, d_ff=40,
                                qk_norm=True, tie_embeddings=False)).eval()
    model.save_pretrained(tmp_path / "run")
    assert main(["export", str(tmp_path / "run"), "--format", "hf", "--out", str(tmp_path / "hf")]) == 0
    assert "Qwen3ForCausalLM" in capsys.readouterr().out
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    ids = torch.randint(0, 48, (1, 7))
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, model(ids).logits)


def test_export_cli_reports_missing_directory(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope"), "--out", str(tmp_path / "hf")]) == 1
    assert "model directory not found" in capsys.readouterr().err
