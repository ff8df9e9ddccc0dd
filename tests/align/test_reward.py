"""The Bradley-Terry loss against its formula, and `train_reward` end to end on a tiny model: ln 2 at step one,
it learns the pairs, the run directory is a reward model that scores chosen above rejected, resume is bitwise."""

import json
import math

import pytest
import torch

from slmkit.align.config import read_reward_config
from slmkit.align.preference_batches import tokenize_pairs
from slmkit.align.preference_data import load_preference_pairs
from slmkit.align.reward_batches import collate_sequences
from slmkit.align.reward_objective import bradley_terry_loss, pair_rewards
from slmkit.align.reward_run import train_reward
from slmkit.data.sources.preference_pairs import write_preference_files
from slmkit.errors import ConfigError
from slmkit.model.checkpoint import read_weights
from slmkit.model.reward_model import load_reward_model
from slmkit.tokenizer import load_tokenizer
from tests.finetune.tiny_workspace import make_workspace, quiet


def test_bradley_terry_against_its_formula():
    chosen, rejected = torch.tensor([0.0, 2.0, 1.0]), torch.tensor([0.0, 0.0, 3.0])
    torch.testing.assert_close(bradley_terry_loss(chosen, rejected),
                               torch.tensor([math.log(2), math.log1p(math.exp(-2)), math.log1p(math.exp(2))]))
    with_margin = bradley_terry_loss(chosen, rejected, torch.tensor([0.0, 1.0, 0.0]))
    assert with_margin[1].item() == pytest.approx(0.313262, abs=1e-6)  # -log s(2 - 1)
    centred = bradley_terry_loss(chosen, rejected, center_rewards_coefficient=0.1)
    torch.testing.assert_close(centred - bradley_terry_loss(chosen, rejected), torch.tensor([0.0, 0.4, 1.6]))


def test_sequence_batches_keep_the_last_token_and_pad_right():
    examples = [type("E", (), {})() for _ in range(2)]
    import numpy as np
    for e, n in zip(examples, (3, 5)):
        e.chosen_inputs, e.rejected_inputs = np.arange(1, n + 1), np.arange(1, n)
        e.chosen_final, e.rejected_final, e.margin = 99, 98, 0.5
    batch = collate_sequences(examples, [1, 0], pad_id=0)
    assert batch["chosen_ids"][0].tolist() == [1, 2, 3, 4, 5, 99] and batch["chosen_mask"][1].tolist() == [1] * 4 + [0] * 2
    assert batch["rejected_ids"][1].tolist() == [1, 2, 98, 0, 0, 0] and batch["margin"].tolist() == [0.5, 0.5]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = make_workspace(tmp_path_factory.mktemp("reward"))
    write_preference_files(root / "prefs.jsonl", pairs=12, heldout=4, seed=0)
    return root


def reward_config(root, out, *extra):
    return read_reward_config(None, [
        f"base={root / 'base'}", f"data.train={root / 'prefs.jsonl'}", f"data.eval={root / 'prefs.heldout.jsonl'}",
        f"train.out_dir={out}", "train.batch_size=2", "train.seq_len=512", "train.max_steps=4", "train.warmup_steps=1",
        "train.lr=3e-3", "train.eval_every=0", "train.checkpoint_every=2", "train.progress=false", "train.plots=false",
        "train.tensorboard=false", "train.log_every=1", "train.sample_tokens=0", *extra])


def test_reward_model_starts_at_ln2_learns_and_loads(workspace, tmp_path):
    cfg = reward_config(workspace, tmp_path / "rm", f"data.eval={workspace / 'prefs.jsonl'}", "train.max_steps=24",
                        "train.batch_size=4", "train.checkpoint_every=0", "train.eval_every=24")
    result = train_reward(cfg, log=quiet)
    rows = [json.loads(line) for line in (tmp_path / "rm" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train"]
    assert train[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)  # zero head: equal rewards
    assert result["val_accuracy"] >= 0.9 and result["val_loss"] < 0.65  # below ln 2 = 0.693
    model = load_reward_model(tmp_path / "rm").eval()
    tok = load_tokenizer(tmp_path / "rm")
    examples = tokenize_pairs(tok, load_preference_pairs(workspace / "prefs.jsonl"), 512)
    with torch.no_grad():
        chosen, rejected = pair_rewards(model, collate_sequences(examples, list(range(12)), tok.eos_id))
    assert (chosen > rejected).float().mean() >= 0.9


def test_resume_is_bitwise_exact(workspace, tmp_path):
    train_reward(reward_config(workspace, tmp_path / "straight"), log=quiet)
    train_reward(reward_config(workspace, tmp_path / "cut", "train.max_steps=2"), log=quiet)
    train_reward(reward_config(workspace, tmp_path / "cut", "train.resume=auto"), log=quiet)
    for name in ("model.safetensors", "reward_head.safetensors"):
        a, b = read_weights(tmp_path / "straight", name), read_weights(tmp_path / "cut", name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def test_bad_config_sections_and_no_base():
    with pytest.raises(ConfigError, match="unknown config section 'dpo'"):
        read_reward_config(None, ["base=x", "dpo.beta=1"])
    with pytest.raises(ConfigError, match="no base model"):
        read_reward_config(None, [])
