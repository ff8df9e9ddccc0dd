"""lm-eval as the reference: a tiny random model exported to Hugging Face format, scored by lm-eval's own `hf`
model (transformers underneath), and lm-eval task YAMLs over local data for `simple_evaluate`."""

from __future__ import annotations

import shutil
from pathlib import Path

import lm_eval
import torch
from lm_eval.api.instance import Instance
from lm_eval.tasks import TaskManager

from slmkit.interop import export_hf
from slmkit.model import Decoder, ModelConfig

OLMO_HELLASWAG = "hellaswag/none/validation/data-00000-of-00001.arrow"


def tiny_scoring_model(vocab: int, max_seq_len: int = 512) -> Decoder:
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=vocab, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8, d_ff=64,
                         max_seq_len=max_seq_len, qk_norm=True, init_std=0.3)  # logits far from uniform
    return Decoder(config).eval()


def export_for_lm_eval(model: Decoder, tokenizer_dir: Path, out: Path) -> Path:
    """`out/ours` (slmkit) and `out/hf` (transformers + tokenizer files AutoTokenizer reads)."""
    model.save_pretrained(out / "ours", tokenizer_dir=tokenizer_dir)
    return export_hf(model, out / "hf", tokenizer_dir=out / "ours")


def instances(kind: str, args_list) -> list[Instance]:
    return [Instance(kind, {}, tuple(args), i) for i, args in enumerate(args_list)]


def write_hellaswag_yaml(folder: Path, arrow_file: Path, name: str = "hellaswag_local") -> None:
    """lm-eval's own hellaswag task (its YAML and utils.py) pointed at a local Arrow file."""
    source = Path(lm_eval.__file__).parent / "tasks" / "hellaswag"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(source / "utils.py", folder / "utils.py")
    text = (source / "hellaswag.yaml").read_text()
    text = text.replace("task: hellaswag", f"task: {name}")
    text = text.replace("dataset_path: Rowan/hellaswag", "dataset_path: arrow")
    text = text.replace("dataset_name: null", f"dataset_name: null\ndataset_kwargs:\n  data_files:\n"
                                               f"    validation: {arrow_file}\n    train: {arrow_file}")
    (folder / f"{name}.yaml").write_text(text)


def write_rolling_yaml(folder: Path, jsonl: Path, name: str = "stories_rolling") -> None:
    """A WikiText-style loglikelihood_rolling task over a local JSONL of {"text": ...} documents."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(
        f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {jsonl}\n"
        "output_type: loglikelihood_rolling\ntest_split: test\ndoc_to_text: ''\ndoc_to_target: '{{text}}'\n"
        "metric_list:\n  - metric: word_perplexity\n  - metric: byte_perplexity\n  - metric: bits_per_byte\n")


def run_lm_eval(lm, task: str, include_path: Path, limit: int | None = None) -> dict:
    """lm-eval's simple_evaluate on one task; its metrics as {"acc": ..., "acc_norm": ...}."""
    manager = TaskManager(include_path=str(include_path), include_defaults=False)  # skip indexing lm-eval's own
    results = lm_eval.simple_evaluate(model=lm, tasks=[task], task_manager=manager, limit=limit, bootstrap_iters=0,
                                      log_samples=False)
    metrics = results["results"][task]
    return {key.split(",")[0]: value for key, value in metrics.items() if "," in key and "stderr" not in key}
