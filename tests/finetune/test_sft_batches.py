"""SFT batches: a packed batch's summed loss equals the examples' losses run one at a time, labels come only
from each example's own trained tokens, every example once per epoch, exact resume, truncation and
dropping, evaluation batches, and the Trainer's accumulation with uneven target counts."""

import json
import random

import pytest
import torch

from slmkit.errors import DataError
from slmkit.finetune.assistant_mask import SFTExample
from slmkit.finetune.packing import best_fit_decreasing
from slmkit.finetune.sft_batches import SFTBatches, SFTEvalBatches, sft_loss
from slmkit.model import Decoder
from tests.model.tiny import FAMILY_CONFIGS, tiny_config

SEQ = 32
KEYS = ("input_ids", "labels", "positions", "document_ids")


def make_examples(count: int, seed: int = 0, vocab: int = 64, longest: int = 20) -> list[SFTExample]:
    """Distinct random examples: a prompt (not trained) then an answer (trained), sometimes two turns."""
    rng = random.Random(seed)
    examples = []
    for k in range(count):
        n = rng.randint(4, longest)
        ids = [k % vocab] + [rng.randrange(vocab) for _ in range(n - 1)]  # the first id tells examples apart
        cut = rng.randint(1, n - 2)
        mask = [False] * cut + [True] * (n - cut)
        if cut + 5 < n and rng.random() < 0.5:  # a second, untrained turn in the middle
            mask[cut + 2:cut + 4] = [False, False]
        examples.append(SFTExample(ids, mask))
    return examples


def example_loss(model, example: SFTExample) -> torch.Tensor:
    """The example alone, unpacked: summed cross-entropy of each trained token given the tokens before it."""
    ids = torch.tensor(example.ids)
    targets = torch.tensor([i if m else -100 for i, m in zip(example.ids[1:], example.train_mask[1:])])
    out = model(ids[None, :-1], targets[None])
    return out.loss * (targets != -100).sum()


def one_epoch_batch(examples, **kwargs) -> tuple[SFTBatches, dict]:
    probe = SFTBatches(examples, rows_per_step=1, seq_len=SEQ, **kwargs)
    source = SFTBatches(examples, rows_per_step=probe.rows_per_epoch, seq_len=SEQ, **kwargs)
    return source, source.next_batch()


@pytest.mark.parametrize("family", ["qwen3", "gpt2", "moe"])
def test_packed_loss_equals_the_sum_of_per_example_losses(family):
    torch.manual_seed(0)
    model = Decoder(tiny_config(**FAMILY_CONFIGS[family])).eval()
    examples = make_examples(12)
    source, batch = one_epoch_batch(examples)
    assert batch["input_ids"].shape[0] < len(examples)  # several examples share rows
    assert int(batch["document_ids"].max()) >= 1
    packed, _ = sft_loss(model, batch)
    if family == "moe":  # the auxiliary losses are per batch, not per example: compare the cross-entropy only
        out = model(batch["input_ids"], batch["labels"], positions=batch["positions"], document_ids=batch["document_ids"])
        packed = out.loss * (batch["labels"] != -100).sum()
    alone = sum(example_loss(model, e) for e in examples)
    torch.testing.assert_close(packed, alone, rtol=1e-5, atol=1e-5)


def test_labels_are_each_examples_own_trained_tokens():
    examples = make_examples(30, seed=1)
    by_first_id = {e.ids[0]: e for e in examples}
    source = SFTBatches(examples, rows_per_step=4, seq_len=SEQ, seed=3)
    seen = []
    for _ in range(5):
        batch = source.next_batch()
        for row in range(4):
            docs = batch["document_ids"][row]
            for doc in docs.unique().tolist():
                where = (docs == doc).nonzero().flatten()
                if doc < 0:
                    assert (batch["labels"][row, where] == -100).all()
                    continue
                assert where.tolist() == list(range(int(where[0]), int(where[-1]) + 1))  # contiguous
                inputs = batch["input_ids"][row, where].tolist()
                example = by_first_id[inputs[0]]
                expected = [i if m else -100 for i, m in zip(example.ids[1:], example.train_mask[1:])]
                assert inputs == example.ids[:-1]
                assert batch["labels"][row, where].tolist() == expected
                assert batch["positions"][row, where].tolist() == list(range(len(where)))
                seen.append(example.ids[0])
    assert len(seen) > 20


def test_every_example_once_per_epoch_and_epochs_reshuffle():
    examples = make_examples(25, seed=2)
    source = SFTBatches(examples, rows_per_step=1, seq_len=SEQ, seed=5)
    epochs = []
    for _ in range(2):
        rows = source.rows_per_epoch
        firsts = []
        for _ in range(rows):
            batch = source.next_batch()
            starts = (batch["positions"][0] == 0) & (batch["document_ids"][0] >= 0)
            firsts.extend(batch["input_ids"][0, starts].tolist())
        assert sorted(firsts) == sorted(e.ids[0] for e in examples)
        epochs.append(firsts)
    assert epochs[0] != epochs[1]


def test_resume_continues_bitwise_identically():
    examples = make_examples(20, seed=4)
    straight = SFTBatches(examples, rows_per_step=3, seq_len=SEQ, seed=9)
    expected = [straight.next_batch() for _ in range(12)]  # several epochs
    assert straight.epoch >= 2
    first = SFTBatches(examples, rows_per_step=3, seq_len=SEQ, seed=9)
    for _ in range(5):
        first.next_batch()
    state = json.loads(json.dumps(first.state_dict()))  # it travels in trainer_state.json
    resumed = SFTBatches(examples, rows_per_step=3, seq_len=SEQ, seed=123)  # the checkpoint's seed wins
    resumed.load_state_dict(state)
    for want in expected[5:]:
        got = resumed.next_batch()
        for key in KEYS:
            assert torch.equal(got[key], want[key]), key
    with pytest.raises(DataError, match="cannot resume exactly"):
        SFTBatches(examples[:-1], rows_per_step=3, seq_len=SEQ).load_state_dict(state)


def test_without_packing_one_example_per_row_right_padded():
    examples = make_examples(6, seed=6)
    batch = SFTBatches(examples, rows_per_step=6, seq_len=SEQ, pack=False, pad_id=63).next_batch()
    by_first_id = {e.ids[0]: e for e in examples}
    for row in range(6):
        n = int((batch["document_ids"][row] == 0).sum())
        example = by_first_id[int(batch["input_ids"][row, 0])]
        assert n == len(example.ids) - 1
        assert (batch["document_ids"][row, n:] == -1).all() and (batch["input_ids"][row, n:] == 63).all()
        assert (batch["labels"][row, n:] == -100).all()


def test_truncation_keeps_the_start_and_drops_examples_left_without_targets():
    long_answer = SFTExample(list(range(40)), [False] * 10 + [True] * 30)  # cut to 33 tokens: targets remain
    late_answer = SFTExample(list(range(40)), [False] * 35 + [True] * 5)  # its answer starts past the cut
    fits = SFTExample(list(range(33)), [False] * 32 + [True])  # seq_len + 1 tokens: fills one row exactly
    with pytest.warns(UserWarning, match="2 of 3 training examples were longer.*1 had no target left"):
        source = SFTBatches([long_answer, late_answer, fits], rows_per_step=2, seq_len=SEQ, pack=False)
    assert (source.report.truncated, source.report.dropped, source.report.kept_indices) == (2, 1, (0, 2))
    batch = source.next_batch()
    assert (batch["document_ids"] == 0).all()  # both rows are full
    rows = {int((batch["labels"][r] != -100).sum()): r for r in range(2)}
    assert batch["input_ids"][rows[23]].tolist() == list(range(32))  # long_answer's start, targets 11..32
    assert batch["labels"][rows[1]].tolist() == [-100] * 31 + [32]  # `fits`: its last token is a target
    with pytest.raises(DataError, match="none of the 1 training examples has a target"):
        SFTBatches([late_answer], rows_per_step=1, seq_len=SEQ)
    with pytest.raises(DataError, match="example 0 has 3 ids but 2 mask entries"):
        SFTBatches([SFTExample([1, 2, 3], [False, True])], rows_per_step=1, seq_len=SEQ)


def test_best_fit_decreasing_fills_the_fullest_bin_that_fits():
    lengths = [6, 5, 4, 3, 2, 2]
    bins = best_fit_decreasing(lengths, capacity=8, order=range(6))
    assert bins == [[0, 4], [1, 3], [2, 5]]
    assert all(sum(lengths[i] for i in b) <= 8 for b in bins)


def test_eval_batches_are_every_example_once_and_match_plain_scoring():
    torch.manual_seed(0)
    model = Decoder(tiny_config()).eval()
    examples = make_examples(7, seed=8)
    evaluation = SFTEvalBatches(examples, batch_size=3, seq_len=SEQ, rank=0, world_size=1)
    batches = list(evaluation)
    assert len(batches) == len(evaluation) == 3
    assert [int(b["input_ids"][r, 0]) for b in batches for r in range(len(b["input_ids"]))] == [e.ids[0] for e in examples]
    with torch.no_grad():
        total = sum(float(sft_loss(model, b)[0]) for b in batches)
        plain = sum(float(torch.nn.functional.cross_entropy(model(x).logits.flatten(0, 1), y.flatten(), reduction="sum"))
                    for x, y in evaluation.pairs())  # the Trainer's evaluation: no document_ids needed
        alone = sum(float(example_loss(model, e)) for e in examples)
    assert total == pytest.approx(alone, rel=1e-5) and plain == pytest.approx(alone, rel=1e-5)
    split = [SFTEvalBatches(examples, batch_size=2, seq_len=SEQ, rank=r, world_size=2) for r in range(2)]
    firsts = sorted(int(x[i, 0]) for part in split for x, _ in part.pairs() for i in range(len(x)))
    assert firsts == sorted(e.ids[0] for e in examples)


def test_a_micro_batch_without_targets_has_zero_loss_and_finite_gradients():
    model = Decoder(tiny_config())
    batch = SFTBatches(make_examples(4), rows_per_step=2, seq_len=SEQ).next_batch()
    batch["labels"][:] = -100
    loss, _ = sft_loss(model, batch)
    loss.backward()
    assert float(loss.detach()) == 0.0
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_trainer_accumulation_normalises_by_the_step_target_count(tmp_path):
    """2 micro-batches of 2 rows == 1 batch of 4 rows, with rows holding very different target counts."""
    from slmkit.train import Trainer
    from tests.train.conftest import run_config

    examples = make_examples(40, seed=10, vocab=64, longest=30)
    results = []
    for accum, rows in ((2, 2), (1, 4)):
        cfg = run_config(tmp_path / "data", tmp_path / f"run{accum}", grad_accum=accum, batch_size=rows, max_steps=2,
                         warmup_steps=0, seq_len=SEQ)
        torch.manual_seed(0)
        model = Decoder(tiny_config(vocab_size=64))
        data = SFTBatches(examples, rows_per_step=4, seq_len=SEQ, seed=1)
        trainer = Trainer(cfg, model, data, loss_fn=sft_loss, log=lambda *a, **k: None)
        losses = [trainer.train_step()["loss"] for _ in range(2)]
        results.append((losses, {k: v.detach().clone() for k, v in model.state_dict().items()}))
    (loss_a, w_a), (loss_b, w_b) = results
    assert loss_a == pytest.approx(loss_b, rel=1e-5)
    for name in w_a:
        torch.testing.assert_close(w_a[name], w_b[name], rtol=1e-5, atol=1e-5, msg=name)
