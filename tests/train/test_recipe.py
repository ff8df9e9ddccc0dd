"""`slm train` on a recipe whose data is not prepared yet: the data is prepared first, the recipe is
read once, the model gets the new tokenizer's vocabulary; a too-small model.vocab_size is one message
wherever training starts (the CLI, `train_from_recipe`, `train`)."""

import json
import subprocess
import sys

import pytest
import yaml

from slmkit.cli import main
from slmkit.data.sources import generate_stories
from slmkit.errors import ConfigError
from slmkit.tokenizer import train_bpe_from_texts
from slmkit.train import config as train_config
from slmkit.train import load_run_config, train
from tests.train.conftest import REPO, TINY_MODEL, run_config, subprocess_env, write_recipe

NEW_VOCAB = 300  # not the fixture data's 320, nor ModelConfig's default 4096


@pytest.fixture(scope="module")
def new_tokenizer(tmp_path_factory):
    path = tmp_path_factory.mktemp("new-tok")
    train_bpe_from_texts(list(generate_stories(200, seed=11)), NEW_VOCAB).save(path)
    return path


def unprepared_recipe(path, tokenizer_dir, run_dir, model=None):
    """A tiny recipe whose data section points at an empty directory (prepared by `slm train`)."""
    data = {"out_dir": str(path.parent / "data"), "progress": False, "workers": 1,
            "tokenizer": {"path": str(tokenizer_dir)}, "val_fraction": 0.05,
            "sources": {"stories": {"kind": "synthetic", "limit": 300, "seed": 5}}}
    train_section = dict(out_dir=str(run_dir), batch_size=2, seq_len=32, max_steps=2, warmup_steps=1, eval_every=0,
                         eval_windows=4, checkpoint_every=0, log_every=1, progress=False, tensorboard=False,
                         plots=False, sample_tokens=0, prepare_if_missing=True)
    path.write_text(yaml.safe_dump({"model": model or dict(TINY_MODEL), "data": data, "train": train_section}))
    return path


def test_unprepared_data_is_prepared_then_the_recipe_read_once(tmp_path, new_tokenizer, monkeypatch, capsys):
    reads = []
    read_yaml = train_config.read_yaml
    monkeypatch.setattr(train_config, "read_yaml", lambda path: reads.append(path) or read_yaml(path))
    recipe = unprepared_recipe(tmp_path / "r.yaml", new_tokenizer, tmp_path / "run")
    assert main(["train", str(recipe)]) == 0, capsys.readouterr().err
    assert reads == [str(recipe)]
    assert (tmp_path / "data" / "tokenizer").is_dir()
    saved = load_run_config(tmp_path / "run" / "config.yaml")  # what the run trained with
    assert saved.model.vocab_size == NEW_VOCAB
    # a recipe that sets vocab_size keeps it (the data's tokenizer only fills in what is left out)
    explicit = unprepared_recipe(tmp_path / "r2.yaml", new_tokenizer, tmp_path / "run2",
                                 model={**TINY_MODEL, "vocab_size": 512})
    assert main(["train", str(explicit)]) == 0
    assert load_run_config(tmp_path / "run2" / "config.yaml").model.vocab_size == 512


def test_too_small_vocabulary_is_one_message_everywhere(data_dir, tmp_path, capsys):
    expected = ("model.vocab_size (100) is smaller than the vocabulary of the data's tokenizer (320, in "
                f"{data_dir / 'tokenizer'}): leave model.vocab_size out to use the tokenizer's size, or set it to "
                "at least 320")
    recipe = write_recipe(tmp_path / "r.yaml", data_dir, tmp_path / "run")
    assert main(["train", str(recipe), "model.vocab_size=100"]) == 1
    assert capsys.readouterr().err == f"error: {expected}\n"
    cfg = run_config(data_dir, tmp_path / "run")
    cfg.model.vocab_size = 100
    with pytest.raises(ConfigError) as err:
        train(cfg, log=lambda *a: None)
    assert str(err.value) == expected
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_two_ranks_prepare_once_and_train_with_the_new_vocabulary(tmp_path, new_tokenizer):
    """Under torchrun rank 0 prepares while rank 1 waits at the barrier; both then read the recipe's
    config with the new tokenizer's vocabulary (DDP would fail on embeddings of different sizes)."""
    recipe = unprepared_recipe(tmp_path / "r.yaml", new_tokenizer, tmp_path / "run")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "slmkit",
               "train", str(recipe), "train.backend=gloo"]
    out = subprocess.run(command, env=subprocess_env(), capture_output=True, text=True, timeout=240, cwd=REPO)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert out.stdout.count("preparing data in") == 1
    assert load_run_config(tmp_path / "run" / "config.yaml").model.vocab_size == NEW_VOCAB
    assert json.loads((tmp_path / "run" / "run_info.json").read_text())["hardware"]["world_size"] == 2
