"""slmkit's DPO against TRL's DPOTrainer on the same tiny model and pairs: the same tokens are scored, and the
loss and the rewards TRL logs agree for each loss type, with a policy that differs from its reference."""

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer

from slmkit.align.dpo_objective import DPOObjective, DPOSettings
from slmkit.align.preference_batches import collate_pairs, tokenize_pairs
from slmkit.align.preference_data import record_to_pair
from slmkit.align.reference import Reference
from slmkit.data.sources.preference_pairs import generate_preference_pairs
from slmkit.finetune.adapter import resize_vocabulary
from slmkit.interop.hf_export import export_hf
from slmkit.loading import load_model
from slmkit.tokenizer import load_tokenizer
from slmkit.tokenizer.chat_template import with_default_chat_template
from tests.finetune.tiny_workspace import make_workspace

PAIRS = 4


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = make_workspace(tmp_path_factory.mktemp("dpo_trl"))
    tokenizer, _ = with_default_chat_template(load_tokenizer(root / "tok"))
    tokenizer.save(root / "chat_tok")
    reference, _ = load_model(root / "base")
    resize_vocabulary(reference, tokenizer.vocab_size)
    policy, _ = load_model(root / "base")
    resize_vocabulary(policy, tokenizer.vocab_size)
    torch.manual_seed(1)
    with torch.no_grad():  # a policy some way from its reference, so the loss is not ln 2
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    export_hf(reference, root / "hf_ref", tokenizer_dir=root / "chat_tok")
    export_hf(policy, root / "hf_policy", tokenizer_dir=root / "chat_tok")
    records = [r for r in generate_preference_pairs(40, seed=3)
               if len(r["prompt"][-1]["content"]) < 200][:PAIRS]  # short prompts: story requests
    return root, tokenizer, policy.eval(), reference.eval(), records


def trl_trainer(root, records, loss_type, tmp_path):
    args = DPOConfig(output_dir=str(tmp_path / "trl"), per_device_train_batch_size=PAIRS, beta=0.1,
                     loss_type=[loss_type], label_smoothing=0.2 if loss_type == "robust" else 0.0, max_length=None,
                     report_to=[], use_cpu=True, bf16=False, dataset_num_proc=None)
    columns = [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in records]
    model = AutoModelForCausalLM.from_pretrained(root / "hf_policy", dtype=torch.float32)
    ref = AutoModelForCausalLM.from_pretrained(root / "hf_ref", dtype=torch.float32)
    return DPOTrainer(model=model, ref_model=ref, args=args, train_dataset=Dataset.from_list(columns),
                      processing_class=AutoTokenizer.from_pretrained(root / "chat_tok"))


def test_the_same_tokens_are_scored_as_trl(setup, tmp_path):
    root, tokenizer, _, _, records = setup
    trainer = trl_trainer(root, records, "sigmoid", tmp_path)
    ours = tokenize_pairs(tokenizer, [record_to_pair(r, f"record {i}") for i, r in enumerate(records)], seq_len=1024)
    for i, row in enumerate(trainer.train_dataset):
        for side in ("chosen", "rejected"):
            full = row["prompt_ids"] + row[f"{side}_ids"]
            inputs, labels = getattr(ours[i], f"{side}_inputs"), getattr(ours[i], f"{side}_labels")
            assert inputs.tolist() == full[:-1]  # the same rendered conversation, token for token
            scored = [t for t, label in enumerate(labels.tolist()) if label != -100]
            # TRL scores everything after the prompt; we score the assistant span: the same tokens for ChatML
            assert scored == list(range(len(row["prompt_ids"]) - 1, len(full) - 1)), side


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo", "hinge", "robust"])
def test_loss_and_rewards_equal_trls(setup, tmp_path, loss_type):
    root, tokenizer, policy, reference, records = setup
    trainer = trl_trainer(root, records, loss_type, tmp_path)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(PAIRS)])
    trainer.model.eval()
    with torch.no_grad():
        trl_loss = trainer.compute_loss(trainer.model, batch)
    trl_metrics = {k: v[-1] for k, v in trainer._metrics["eval"].items()}

    pairs = [record_to_pair(r, f"record {i}") for i, r in enumerate(records)]
    ours = collate_pairs(tokenize_pairs(tokenizer, pairs, seq_len=1024), list(range(PAIRS)), pad_id=0)
    settings = DPOSettings(beta=0.1, loss_type=loss_type, label_smoothing=0.2 if loss_type == "robust" else 0.0)
    with torch.no_grad():
        loss_sum, metrics = DPOObjective(settings, Reference("copy", policy, reference))(policy, ours)
    assert trl_loss.item() > 0.01 and abs(trl_loss.item() - 0.693147) > 1e-3  # policy != reference
    torch.testing.assert_close(loss_sum / PAIRS, trl_loss, rtol=1e-4, atol=1e-5)
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"):
        assert metrics[key] == pytest.approx(trl_metrics[key], rel=1e-4, abs=1e-5), key
