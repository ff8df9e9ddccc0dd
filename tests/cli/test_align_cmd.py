"""`slm data preferences-synthetic`, `slm align`, `slm reward` and `slm rl` through the CLI's main(): files written with the
printed counts, a DPO run that ends as an adapter `slm generate` loads, a reward model that loads, and bad input as
one line with a non-zero exit."""

import json
import re

import pytest

from slmkit.cli import main
from tests.cli.test_finetune_cmd import _base


def test_preferences_synthetic_writes_both_files(tmp_path, capsys):
    out = tmp_path / "data" / "prefs.jsonl"
    assert main(["data", "preferences-synthetic", "--out", str(out), "--pairs", "10", "--heldout", "5"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"wrote 10 train pairs \(wrong_name 2, .*\) to .*prefs.jsonl and 5 held-out pairs", printed)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 10 and {"prompt", "chosen", "rejected", "flaw", "check"} <= rows[0].keys()
    assert len((tmp_path / "data" / "prefs.heldout.jsonl").read_text().splitlines()) == 5


def test_align_then_generate(tmp_path, capsys):
    _base(tmp_path)
    assert main(["data", "preferences-synthetic", "--out", str(tmp_path / "prefs.jsonl"), "--pairs", "8",
                 "--heldout", "2"]) == 0
    run = tmp_path / "dpo"
    code = main(["align", "configs/dpo-lora.yaml", f"policy={tmp_path / 'base'}", f"data.train={tmp_path / 'prefs.jsonl'}",
                 f"data.eval={tmp_path / 'prefs.heldout.jsonl'}", f"train.out_dir={run}", "train.max_steps=2",
                 "train.max_minutes=null", "train.time_schedule=false", "train.warmup_steps=0", "train.batch_size=2",
                 "train.seq_len=512", "train.eval_every=0", "train.sample_tokens=0", "train.plots=false",
                 "train.tensorboard=false", "train.precision=fp32", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and (run / "adapter.json").is_file()
    assert "held-out pairs: preference accuracy" in out and "finished at step 2" in out
    assert main(["generate", str(run), "--prompt", "Once", "--max-new-tokens", "3", "--temperature", "0"]) == 0


def test_reward_then_load(tmp_path, capsys):
    from slmkit.model.reward_model import load_reward_model

    _base(tmp_path)
    assert main(["data", "preferences-synthetic", "--out", str(tmp_path / "prefs.jsonl"), "--pairs", "8",
                 "--heldout", "2"]) == 0
    run = tmp_path / "rm"
    code = main(["reward", "configs/reward.yaml", f"base={tmp_path / 'base'}", f"data.train={tmp_path / 'prefs.jsonl'}",
                 f"data.eval={tmp_path / 'prefs.heldout.jsonl'}", f"train.out_dir={run}", "train.max_steps=2",
                 "train.max_minutes=null", "train.time_schedule=false", "train.warmup_steps=0", "train.batch_size=2",
                 "train.seq_len=512", "train.eval_every=0", "train.plots=false", "train.tensorboard=false",
                 "train.precision=fp32", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and "held-out pairs: accuracy" in out and "finished at step 2" in out
    assert load_reward_model(run).score.weight.abs().sum() > 0


def test_rl_with_rules(tmp_path, capsys):
    _base(tmp_path)
    run = tmp_path / "grpo"
    code = main(["rl", "configs/grpo.yaml", f"policy={tmp_path / 'base'}", "reward=rules:story+finished",
                 f"data.train={tmp_path / 'sft.jsonl'}", f"data.eval={tmp_path / 'sft.jsonl'}", "data.eval_limit=2",
                 f"train.out_dir={run}", "train.max_steps=2", "train.max_minutes=null", "train.time_schedule=false",
                 "train.warmup_steps=0", "train.batch_size=4", "grpo.group_size=2", "grpo.max_new_tokens=6",
                 "train.eval_every=0", "train.sample_tokens=0", "train.plots=false", "train.tensorboard=false",
                 "train.precision=fp32", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and "held-out prompts: mean reward" in out and "finished at step 2" in out
    assert (run / "adapter.json").is_file()


@pytest.mark.parametrize("args, message", [
    (["align", "configs/dpo-lora.yaml", "policy=/nonexistent/model"], "/nonexistent/model"),
    (["align", "configs/dpo-lora.yaml", "policy=x", "dpo.loss_type=kto"], "dpo.loss_type must be one of"),
    (["align", "configs/dpo-lora.yaml", "policy=x", "reward.model=y"], "unknown config section 'reward'"),
    (["data", "preferences-synthetic", "--out", "prefs.txt"], "must end in .jsonl"),
    (["reward", "configs/reward.yaml", "base=x", "lora.r=4"], "unknown config section 'lora'"),
    (["rl", "configs/grpo.yaml", "policy=x", "grpo.group_size=1"], "group_size must be at least 2"),
])
def test_bad_input_is_one_line_and_nonzero(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path) if args[0] == "data" else None
    code = main(args)
    err = capsys.readouterr().err
    assert code != 0 and message in err and len(err.strip().splitlines()) == 1, err
