"""GRPO's rollout batches: completion labels cover the completion up to and including EOS and nothing after, rows
come in groups of one prompt, the same seed draws the same batch, and a saved state resumes the same draws."""

import pytest
import torch

from slmkit.align.grpo_objective import GRPOSettings
from slmkit.align.prompt_data import PromptRecord, load_prompts, record_to_prompt
from slmkit.align.rollouts import RolloutBatches, collate_rollouts
from slmkit.align.rule_rewards import Rollout, make_reward
from slmkit.errors import ConfigError, DataError
from slmkit.loading import load_model
from slmkit.tokenizer import load_tokenizer
from slmkit.tokenizer.chat_template import render_chat, with_default_chat_template
from slmkit.finetune.adapter import resize_vocabulary
from tests.finetune.tiny_workspace import make_workspace


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = make_workspace(tmp_path_factory.mktemp("rollouts"))
    tok, _ = with_default_chat_template(load_tokenizer(root / "tok"))
    model, _ = load_model(root / "base")
    resize_vocabulary(model, tok.vocab_size)
    prompts = load_prompts(root / "sft.jsonl")
    return model, tok, prompts


def test_collated_labels_stop_after_eos():
    rollouts = [Rollout([], None, "", [5, 6, 7], [8, 9, 2], True), Rollout([], None, "", [5], [8], False)]
    batch = collate_rollouts(rollouts, pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9], [5, 0, 0, 0, 0]]
    assert batch["labels"].tolist() == [[-100, -100, 8, 9, 2], [8, -100, -100, -100, -100]]


def test_a_model_that_says_eos_at_once_gets_one_scored_token(setup):
    model, tok, prompts = setup
    with torch.no_grad():
        model.head.weight[tok.eos_id] += 50.0  # EOS wins every step (the head is tied: embedding too)
    try:
        source = RolloutBatches(model, tok, prompts, make_reward("rules:finished"), GRPOSettings(group_size=2), 4)
        batch = source.next_batch()
    finally:
        with torch.no_grad():
            model.head.weight[tok.eos_id] -= 50.0
    scored = batch["labels"] != -100
    assert scored.sum(-1).tolist() == [1, 1, 1, 1] and batch["rewards"].tolist() == [1, 1, 1, 1]
    rows = torch.arange(4)
    assert (batch["labels"][rows, scored.float().argmax(-1)] == tok.eos_id).all()


def test_groups_determinism_and_resume(setup):
    model, tok, prompts = setup
    settings = GRPOSettings(group_size=2, max_new_tokens=6)

    def source():
        return RolloutBatches(model, tok, prompts, make_reward("rules:concise"), settings, 4, seed=3)

    a, b = source(), source()
    first = a.next_batch()
    assert torch.equal(first["input_ids"], b.next_batch()["input_ids"])
    prompt_len = (first["labels"] == -100).float().argmin(-1)
    assert prompt_len[0] == prompt_len[1] and prompt_len[2] == prompt_len[3]  # two groups of one prompt each
    state = a.state_dict()
    expected = a.next_batch()
    c = source()
    c.load_state_dict(state)
    assert torch.equal(c.next_batch()["input_ids"], expected["input_ids"])


def test_replayed_batch_survives_a_checkpoint(setup):
    model, tok, prompts = setup
    settings = GRPOSettings(group_size=2, max_new_tokens=4, iterations=2)
    a = RolloutBatches(model, tok, prompts, make_reward("rules:concise"), settings, 4)
    first = a.next_batch()
    assert "old_logps" in first
    state = a.state_dict()
    b = RolloutBatches(model, tok, prompts, make_reward("rules:concise"), settings, 4)
    b.load_state_dict(state)
    replay = b.next_batch()
    assert all(torch.equal(replay[k], first[k]) for k in first)
    assert a.next_batch() is first and a.replay is None  # the second step of the same rollouts


def test_bad_inputs(setup, tmp_path):
    model, tok, prompts = setup
    with pytest.raises(DataError, match="whole groups"):
        RolloutBatches(model, tok, prompts, None, GRPOSettings(group_size=3), 4)
    with pytest.raises(DataError, match="no prompt fits: with max_new_tokens 600"):
        RolloutBatches(model, tok, prompts, None, GRPOSettings(max_new_tokens=600), 4)
    lengths = [len(tok.encode(render_chat(tok, p.messages))) for p in prompts]
    settings = GRPOSettings(max_new_tokens=model.config.max_seq_len - max(lengths) + 1)
    longest = lengths.count(max(lengths))
    with pytest.warns(UserWarning, match=rf"{longest} of {len(prompts)} prompts have more than"):
        kept = RolloutBatches(model, tok, prompts, None, settings, 4)  # only the longest are skipped
    assert len(kept.prompts) == len(prompts) - longest and len(kept.prompt_ids) == len(kept.prompts)
    with pytest.raises(ConfigError, match="unknown reward rule 'tidy'"):
        make_reward("rules:story+tidy")
    with pytest.raises(ConfigError, match="neither rules"):
        make_reward(str(tmp_path))
    with pytest.raises(ConfigError, match="cannot import"):
        make_reward("python:no_such_module:f")
    assert record_to_prompt({"prompt": "Hi"}, "r") == PromptRecord([{"role": "user", "content": "Hi"}])
    with pytest.raises(DataError, match="needs 'prompt' or 'messages'"):
        record_to_prompt({"text": "x"}, "r")
