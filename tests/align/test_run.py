"""`align` end to end on a tiny model: the loss is ln 2 at step one, DPO learns the pairs, the precomputed
reference gives the live reference's curve, LoRA resume is bitwise exact, an SFT adapter trains on as the
policy, a full run writes a model directory, and bad settings are clear errors."""

import json
import math

import pytest
import torch

from slmkit.align.config import read_align_config
from slmkit.align.run import align
from slmkit.data.sources.preference_pairs import write_preference_files
from slmkit.errors import ConfigError, DataError
from slmkit.finetune.adapter import read_adapter_meta, read_adapter_tensors, resize_vocabulary
from slmkit.finetune.loading import load_for_use
from slmkit.finetune.run import finetune
from slmkit.loading import load_model
from slmkit.tokenizer import load_tokenizer
from slmkit.tokenizer.chat_template import with_default_chat_template
from tests.finetune.tiny_workspace import finetune_config, make_workspace, quiet


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """make_workspace's base (no chat template: DPO adds ChatML and trains the embedding in full) and
    root/chat_base, the same model with ChatML already in its tokenizer (only adapters train on it)."""
    root = make_workspace(tmp_path_factory.mktemp("align"))
    write_preference_files(root / "prefs.jsonl", pairs=12, heldout=4, seed=0)
    tokenizer, _ = with_default_chat_template(load_tokenizer(root / "tok"))
    tokenizer.save(root / "chat_tok")
    model, _ = load_model(root / "base")
    resize_vocabulary(model, tokenizer.vocab_size)
    model.save_pretrained(root / "chat_base", tokenizer_dir=root / "chat_tok")
    return root


def align_config(root, out, *extra, policy=None):
    overrides = [f"policy={policy or root / 'base'}", f"data.train={root / 'prefs.jsonl'}",
                 f"data.eval={root / 'prefs.heldout.jsonl'}", f"train.out_dir={out}", "train.batch_size=2",
                 "train.seq_len=512", "train.max_steps=4", "train.warmup_steps=0", "train.lr=1e-2",
                 "train.eval_every=0", "train.checkpoint_every=2", "train.sample_tokens=0", "train.progress=false",
                 "train.plots=false", "train.tensorboard=false", "train.log_every=1", "lora.r=4", *extra]
    return read_align_config(None, overrides)


def train_rows(run):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["kind"] == "train"], [r for r in rows if r["kind"] == "eval"]


def test_lora_dpo_starts_at_ln2_and_writes_an_adapter(workspace, tmp_path):
    result = align(align_config(workspace, tmp_path / "run", "train.eval_every=2"), log=quiet)
    train, evals = train_rows(tmp_path / "run")
    assert train[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)  # policy == reference at step one
    assert train[0]["rewards/margins"] == 0 and train[0]["rewards/accuracies"] == 0
    assert evals[0]["step"] == 0 and evals[0]["val_accuracy"] == 0.5 and evals[0]["val_margin"] == 0
    assert train[-1]["loss"] != train[0]["loss"] and result["val_pairs"] == 4
    meta = read_adapter_meta(tmp_path / "run")
    assert meta["base"]["path"] == str(workspace / "base")
    assert any(k.endswith("lora_A") for k in read_adapter_tensors(tmp_path / "run"))
    model, tok, _ = load_for_use(tmp_path / "run", merge=False)  # what slm chat / generate load
    assert tok.chat_template and sum(1 for n, _ in model.named_modules() if n.endswith("q_proj")) == 2


def test_dpo_learns_the_preference(workspace, tmp_path):
    # held out = the training pairs here: 12 pairs, 30 steps of 4 pairs, the margin must open up
    cfg = align_config(workspace, tmp_path / "run", f"data.eval={workspace / 'prefs.jsonl'}", "train.max_steps=30",
                       "train.batch_size=4", "train.lr=3e-3", "train.checkpoint_every=0", "dpo.beta=0.5")
    result = align(cfg, log=quiet)
    assert result["val_accuracy"] >= 0.9 and result["val_margin"] > 0.5 and result["val_loss"] < 0.45


@pytest.mark.parametrize("base, live", [("base", "copy"), ("chat_base", "adapters_off")])
def test_precomputed_reference_gives_the_live_references_curve(workspace, tmp_path, base, live):
    """The three references are one model: the starting policy. (On `base` the embedding trains in full, so
    adapters_off would not be it: refused, and auto picks the copy.)"""
    common = ("train.precision=fp32", "train.checkpoint_every=0")
    align(align_config(workspace, tmp_path / "live", *common, f"dpo.reference={live}", policy=workspace / base),
          log=quiet)
    align(align_config(workspace, tmp_path / "pre", *common, "dpo.reference=precomputed", policy=workspace / base),
          log=quiet)
    live_rows, pre_rows = train_rows(tmp_path / "live")[0], train_rows(tmp_path / "pre")[0]
    assert live_rows[-1]["rewards/margins"] != 0
    for a, b in zip(live_rows, pre_rows, strict=True):
        for key in ("loss", "rewards/chosen", "rewards/rejected"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-5), (a["step"], key)


def test_auto_reference_switches_adapters_off_only_when_only_adapters_train(workspace, tmp_path, capsys):
    align(align_config(workspace, tmp_path / "a", "train.max_steps=1", policy=workspace / "chat_base"))
    align(align_config(workspace, tmp_path / "b", "train.max_steps=1"))
    out = capsys.readouterr().out
    assert "reference adapters_off) of " + str(workspace / "chat_base") in out
    assert "reference copy) of " + str(workspace / "base") in out
    with pytest.raises(ConfigError, match="adapters_off would not be the starting policy"):
        align(align_config(workspace, tmp_path / "c", "dpo.reference=adapters_off"), log=quiet)


def test_lora_resume_is_bitwise_exact(workspace, tmp_path):
    # one warmup step: the 2-step first leg then reads the same lr as the 4-step run (warmup, then the peak)
    align(align_config(workspace, tmp_path / "straight", "train.warmup_steps=1"), log=quiet)
    align(align_config(workspace, tmp_path / "cut", "train.warmup_steps=1", "train.max_steps=2"), log=quiet)
    align(align_config(workspace, tmp_path / "cut", "train.warmup_steps=1", "train.resume=auto"), log=quiet)
    a, b = read_adapter_tensors(tmp_path / "straight"), read_adapter_tensors(tmp_path / "cut")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_an_sft_adapter_trains_on_against_a_frozen_copy_of_itself(workspace, tmp_path):
    finetune(finetune_config(workspace, "lora", tmp_path / "sft", "train.max_steps=2"), log=quiet)
    sft = read_adapter_tensors(tmp_path / "sft")
    align(align_config(workspace, tmp_path / "dpo", policy=tmp_path / "sft"), log=quiet)
    train, _ = train_rows(tmp_path / "dpo")
    assert train[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)  # the reference is the SFT policy itself
    dpo = read_adapter_tensors(tmp_path / "dpo")
    assert dpo.keys() == sft.keys() and any(not torch.equal(dpo[k], sft[k]) for k in dpo)
    assert read_adapter_meta(tmp_path / "dpo")["base"] == read_adapter_meta(tmp_path / "sft")["base"]
    base_vocab = read_adapter_meta(tmp_path / "sft")["base"]["vocab_size"]  # the base's token rows stay as they were
    assert torch.equal(dpo["embed.weight"][:base_vocab], sft["embed.weight"][:base_vocab])
    assert not torch.equal(dpo["embed.weight"][base_vocab:], sft["embed.weight"][base_vocab:])  # the chat tokens learn
    with pytest.raises(ConfigError, match="adapter: switching it off"):
        align(align_config(workspace, tmp_path / "x", "dpo.reference=adapters_off", policy=tmp_path / "sft"), log=quiet)


def test_full_dpo_writes_a_model_directory(workspace, tmp_path):
    align(align_config(workspace, tmp_path / "full", "method=full", "train.lr=1e-3"), log=quiet)
    model, _ = load_model(tmp_path / "full")
    base, _ = load_model(workspace / "base")
    assert model.config.vocab_size == base.config.vocab_size + 2  # ChatML tokens added for the chat template
    assert not torch.equal(model.blocks[0].attn.q_proj.weight, base.blocks[0].attn.q_proj.weight)


def test_a_long_prompt_loses_its_start_and_the_reply_stays_scored(workspace):
    from slmkit.align.preference_batches import tokenize_pair
    from slmkit.align.preference_data import PreferencePair

    tok, _ = with_default_chat_template(load_tokenizer(workspace / "tok"))
    long = "Once upon a time there was a very long story. " * 30
    pair = PreferencePair([{"role": "user", "content": long}], [{"role": "assistant", "content": "A cat."}],
                          [{"role": "assistant", "content": "No."}])
    example = tokenize_pair(tok, pair, seq_len=32, index=0)
    full = tokenize_pair(tok, pair, seq_len=4096, index=0)
    assert example.truncated and len(example.chosen_inputs) == 32
    scored = example.chosen_labels[example.chosen_labels != -100].tolist()
    assert scored == full.chosen_labels[full.chosen_labels != -100].tolist()  # the whole reply is still scored
    with pytest.warns(UserWarning, match="pairs were longer than train.seq_len"):
        align(align_config(workspace, workspace / "short", "train.seq_len=64", "train.max_steps=1"), log=quiet)


def test_a_completion_mask_that_is_empty_is_an_error_naming_the_pair(workspace):
    from slmkit.align.preference_batches import tokenize_pair
    from slmkit.align.preference_data import PreferencePair

    tok, _ = with_default_chat_template(load_tokenizer(workspace / "tok"))
    # a template that never renders the assistant: nothing of the completion could be scored
    tok.chat_template = "{% for m in messages %}{% if m['role'] != 'assistant' %}{{ m['content'] }}{% endif %}{% endfor %}"
    pair = PreferencePair([{"role": "user", "content": "Hi"}], [{"role": "assistant", "content": "Hello"}],
                          [{"role": "assistant", "content": "Go"}])
    with pytest.raises(DataError, match=r"pair 7 chosen has no assistant token to train on"):
        tokenize_pair(tok, pair, seq_len=64, index=7)


@pytest.mark.parametrize("override, message", [
    ("dpo.loss_type=kto", "dpo.loss_type must be one of"),
    ("dpo.reference=mirror", "dpo.reference must be one of"),
    ("dpo.beta=0", "dpo.beta must be positive"),
    ("dpo.gamma=1", "gamma"),
    ("method=prefix", "is not one of .full., .lora., .qlora."),
])
def test_bad_settings_are_config_errors(workspace, tmp_path, override, message):
    with pytest.raises((ConfigError, ValueError), match=message):
        align_config(workspace, tmp_path / "run", override)


def test_no_policy_is_a_config_error():
    with pytest.raises(ConfigError, match="no policy model"):
        read_align_config(None, [])
