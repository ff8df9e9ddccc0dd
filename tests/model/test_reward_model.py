"""The reward model against transformers' *ForSequenceClassification (num_labels=1) with the same weights: the
same score at each row's last real token with right and with left padding; and its directory round trip."""

import pytest
import torch
import transformers

from slmkit.errors import CheckpointError
from slmkit.interop import export_hf
from slmkit.loading import load_model
from slmkit.model import Decoder
from slmkit.model.reward_model import (
    RewardModel, last_token_index, load_reward_model, save_reward_model,
)
from tests.model.tiny import FAMILY_CONFIGS, tiny_config

PAD = 0


def reward_model(family: str) -> RewardModel:
    torch.manual_seed(0)
    model = RewardModel(Decoder(tiny_config(**FAMILY_CONFIGS[family])))
    torch.nn.init.normal_(model.score.weight, std=0.5)
    return model.eval()


def padded(lengths, width, left: bool):
    g = torch.Generator().manual_seed(1)
    ids = torch.full((len(lengths), width), PAD)
    mask = torch.zeros((len(lengths), width), dtype=torch.long)
    for row, n in enumerate(lengths):
        cols = slice(width - n, width) if left else slice(0, n)
        ids[row, cols] = torch.randint(1, 64, (n,), generator=g)
        mask[row, cols] = 1
    return ids, mask


@pytest.mark.parametrize("family", ["qwen3", "llama"])
@pytest.mark.parametrize("left", [False, True])
def test_scores_equal_transformers_sequence_classification(family, left, tmp_path):
    ours = reward_model(family)
    hf_dir = export_hf(ours.decoder, tmp_path / "hf")
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(hf_dir, num_labels=1, pad_token_id=PAD).eval()
    with torch.no_grad():
        hf.score.weight.copy_(ours.score.weight)
    ids, mask = padded([5, 9, 3], 9, left)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # transformers counts positions from the first real token only if told
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask, position_ids=positions).logits.squeeze(-1)
        mine = ours(ids, attention_mask=mask)
    torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-5)
    assert mine.abs().min() > 1e-3  # the head is not zero


def test_last_token_index_left_right_and_unpadded():
    _, right = padded([2, 4], 5, left=False)
    _, left = padded([2, 4], 5, left=True)
    assert last_token_index(right, right).tolist() == [1, 3]
    assert last_token_index(left, left).tolist() == [4, 4]
    assert last_token_index(torch.zeros(2, 7), None).tolist() == [6, 6]
    with pytest.raises(ValueError, match="no real token"):
        last_token_index(right, torch.zeros_like(right))


def test_padding_side_does_not_change_the_score():
    model = reward_model("qwen3")
    ids_r, mask_r = padded([4, 7], 8, left=False)
    ids_l, mask_l = padded([4, 7], 8, left=True)
    with torch.no_grad():
        torch.testing.assert_close(model(ids_r, mask_r), model(ids_l, mask_l), rtol=1e-5, atol=1e-5)


def test_directory_round_trip_and_errors(tmp_path):
    model = reward_model("llama")
    save_reward_model(model, tmp_path / "rm", meta={"base": "x"})
    loaded = load_reward_model(tmp_path / "rm")
    ids, mask = padded([3, 6], 6, left=False)
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids, mask), model(ids, mask), rtol=0, atol=0)
    decoder, _ = load_model(tmp_path / "rm")  # still an ordinary model directory: the language model loads
    assert isinstance(decoder, Decoder)
    with pytest.raises(CheckpointError, match="not a reward model"):
        load_reward_model(tmp_path / "nothing")
    (tmp_path / "rm" / "reward.json").write_text("{oops")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_reward_model(tmp_path / "rm")
