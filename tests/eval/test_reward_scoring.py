"""The reward scorer reads the sequences `slm reward` trains on: a pair's chosen reply scores as the training
batch scores it; batching and truncation do not change a score; RL scores finished and cut-off rollouts
differently; `slm eval --reward-model` adds the mean score of the replies to the chat tasks."""

from __future__ import annotations

import json

import pytest
import torch

from slmkit.align.preference_batches import tokenize_pairs
from slmkit.align.preference_data import load_preference_pairs
from slmkit.align.reward_batches import collate_sequences
from slmkit.align.reward_objective import pair_rewards
from slmkit.align.rule_rewards import Rollout, make_reward
from slmkit.cli import main
from slmkit.data.sources.preference_pairs import write_preference_files
from slmkit.eval.evaluation_run import ModelToEvaluate, run_evaluation
from slmkit.eval.generation_tasks import GenerationSettings
from slmkit.eval.reward_scoring import reward_metrics
from slmkit.model.reward_scoring import RewardScorer
from slmkit.model import Decoder, ModelConfig
from slmkit.model.reward_model import RewardModel, load_reward_model, save_reward_model
from slmkit.tokenizer import load_tokenizer
from slmkit.tokenizer.chat_template import with_default_chat_template
from tests.finetune.tiny_workspace import make_workspace


@pytest.fixture(scope="module")
def reward_dir(tmp_path_factory):
    """A random reward model (non-zero head) with a ChatML tokenizer, and a model dir beside it to evaluate."""
    root = make_workspace(tmp_path_factory.mktemp("reward-scoring"))
    tok, _ = with_default_chat_template(load_tokenizer(root / "tok"))
    tok.save(root / "chat-tok")
    torch.manual_seed(1)
    decoder = Decoder(ModelConfig(vocab_size=tok.vocab_size, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2,
                                  head_dim=16, d_ff=128, max_seq_len=512))
    model = RewardModel(decoder)
    torch.nn.init.normal_(model.score.weight, std=1.0)
    save_reward_model(model, root / "rm", tokenizer_dir=root / "chat-tok", meta={"base": "random"})
    decoder.save_pretrained(root / "policy", tokenizer_dir=root / "chat-tok")
    write_preference_files(root / "prefs.jsonl", pairs=6, heldout=2, seed=0)
    return root


def test_a_reply_scores_as_its_training_sequence(reward_dir):
    scorer = RewardScorer.from_dir(reward_dir / "rm")
    tok = load_tokenizer(reward_dir / "rm")
    pairs = load_preference_pairs(reward_dir / "prefs.jsonl")
    with torch.no_grad():  # the training path: tokenize_chat spans -> reward_batches -> pair_rewards
        chosen, rejected = pair_rewards(scorer.model, collate_sequences(tokenize_pairs(tok, pairs, 511),
                                                                        list(range(len(pairs))), tok.eos_id))
    conversations = [p.prompt for p in pairs]
    got_chosen = scorer.score_replies(conversations, [p.chosen[-1]["content"] for p in pairs])
    got_rejected = scorer.score_replies(conversations, [p.rejected[-1]["content"] for p in pairs])
    torch.testing.assert_close(torch.tensor(got_chosen), chosen, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.tensor(got_rejected), rejected, rtol=1e-5, atol=1e-5)
    assert len(set(got_chosen)) == len(pairs)  # a real head: the scores differ


def test_batching_and_truncation_keep_each_score(reward_dir):
    model = load_reward_model(reward_dir / "rm")
    tok = load_tokenizer(reward_dir / "rm")
    one, four = RewardScorer(model, tok, batch_size=1), RewardScorer(model, tok, batch_size=4)
    sequences = [list(range(5, 5 + n)) for n in (3, 40, 7, 1, 25)]  # right padding in mixed-length batches
    torch.testing.assert_close(four.score_ids(sequences), one.score_ids(sequences), rtol=1e-5, atol=1e-5)
    long = list(range(3, 600)) * 2  # 1194 tokens for a 512-token window: the start goes
    assert one.score_ids([long]).item() == pytest.approx(one.score_ids([long[-512:]]).item(), abs=1e-6)
    with pytest.raises(ValueError, match="empty sequence"):
        one.score_ids([[]])


def test_reward_metrics_are_the_scores_summary(reward_dir):
    scorer = RewardScorer.from_dir(reward_dir / "rm")
    conversations = [[{"role": "user", "content": q}] for q in ("Tell me a story.", "Who lost the ball?", "Hi")]
    replies = ["Once upon a time there was a cat.", "Tom lost it.", ""]
    scores = torch.tensor(scorer.score_replies(conversations, replies), dtype=torch.float64)
    metrics = reward_metrics(scorer, conversations, replies)
    assert metrics["reward"] == pytest.approx(scores.mean().item())
    assert metrics["reward_std"] == pytest.approx(((scores - scores.mean()) ** 2).mean().sqrt().item())
    assert (metrics["reward_min"], metrics["reward_max"]) == pytest.approx((scores.min().item(), scores.max().item()))


def test_rl_scores_a_cut_off_reply_without_its_end_of_turn(reward_dir):
    reward = make_reward(str(reward_dir / "rm"))
    scorer = reward.scorer
    messages = [{"role": "user", "content": "Write a story about a cat named Max."}]
    text = "Max the cat found a key"
    finished, cut = (Rollout(messages, None, text, finished=f) for f in (True, False))
    whole, partial = scorer.encode_reply(messages, text), scorer.encode_unfinished(messages, text)
    end = scorer.tokenizer.special_tokens["<|im_end|>"]
    assert end in whole[-2:] and whole.count(end) == partial.count(end) + 1 and whole[:len(partial)] == partial
    got = reward([finished, cut])
    torch.testing.assert_close(got, scorer.score_ids([whole, partial]))
    assert got[0] != got[1]


class RecordingGenerator:
    """Replies "A story." to every conversation and keeps what it was asked."""

    def __init__(self):
        self.asked = []

    def chat(self, conversations, **_):
        self.asked += conversations
        return [f"A story number {k}." for k in range(len(conversations))]


def test_run_evaluation_scores_each_chat_reply(reward_dir):
    scorer = RewardScorer.from_dir(reward_dir / "rm")
    generator = RecordingGenerator()
    results = run_evaluation([ModelToEvaluate("fake", generator=generator)], [], reward_scorer=scorer,
                             generation_tasks=["story_requests", "safety"], generation=GenerationSettings(limit=2),
                             progress=False)
    story_asked, safety_asked = generator.asked[:2], generator.asked[2:]
    expected = reward_metrics(scorer, story_asked, ["A story number 0.", "A story number 1."])
    assert results.results["fake"]["story_requests"]["reward"] == pytest.approx(expected["reward"])
    expected = reward_metrics(scorer, safety_asked, [f"A story number {k}." for k in range(len(safety_asked))])
    assert results.results["fake"]["safety"]["reward_max"] == pytest.approx(expected["reward_max"])


def test_eval_reward_model_adds_the_mean_reward(reward_dir, capsys):
    out = reward_dir / "report"
    args = ["eval", str(reward_dir / "policy"), "--task", "story_requests", "--limit", "3", "--max-new-tokens", "8",
            "--reward-model", str(reward_dir / "rm"), "--no-baselines", "--no-progress", "--report", str(out)]
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    metrics = results["results"]["policy"]["story_requests"]
    assert {"accuracy", "reward", "reward_std", "reward_min", "reward_max"} <= set(metrics)
    assert "reward" in capsys.readouterr().out
    assert metrics["reward_min"] <= metrics["reward"] <= metrics["reward_max"]
    assert main(["eval", str(reward_dir / "policy"), "--text", str(reward_dir / "sft.jsonl"),
                 "--reward-model", str(reward_dir / "rm"), "--no-progress"]) == 1
    assert "error: --reward-model scores chat replies: add --suite story-requests" in capsys.readouterr().err
