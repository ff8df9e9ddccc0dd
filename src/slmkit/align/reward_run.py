"""`train_reward(cfg)`: a Bradley-Terry reward model on preference pairs, on the one Trainer; what `slm reward` runs.

    from slmkit.align.config import read_reward_config
    from slmkit.align.reward_run import train_reward
    result = train_reward(read_reward_config("configs/reward.yaml", ["base=runs/demo-sft"]))

The base (a model directory, or an SFT adapter merged into its base) gets the chat template the pairs are
rendered with and a zero-initialised scalar head (model/reward_model.py); every weight trains. Checkpoints and
the run directory are reward model directories: the decoder as an ordinary model directory plus the head, which
`load_reward_model` reads (and `slm rl`'s reward=DIR and the evaluation harness score with).
"""

from __future__ import annotations

from pathlib import Path

import torch

from slmkit.align.config import RewardConfig
from slmkit.align.dpo_objective import count_pairs
from slmkit.align.preference_batches import PreferenceBatches, PreferenceEvalBatches
from slmkit.align.reward_batches import collate_sequences
from slmkit.align.reward_objective import RewardObjective
from slmkit.align.run import save_run_tokenizer, split_pairs
from slmkit.errors import ConfigError
from slmkit.finetune.adapter import is_adapter_dir, load_adapted_model, resize_vocabulary
from slmkit.finetune.run import chat_tokenizer
from slmkit.loading import load_model
from slmkit.model.checkpoint import CONFIG_FILE, WEIGHTS_FILE, read_weights
from slmkit.model.reward_model import REWARD_CONFIG_FILE, REWARD_HEAD_FILE, RewardModel, write_reward_head
from slmkit.tokenizer.chat_template import with_default_chat_template
from slmkit.train.distributed import training_session
from slmkit.train.trainer import Trainer
from slmkit.train.weights import FullWeights, strip_prefixes


class RewardWeights:
    """The Trainer's view of a reward model (see train/weights.py): the decoder as a model directory, plus the head."""

    files = (WEIGHTS_FILE, CONFIG_FILE, REWARD_HEAD_FILE, REWARD_CONFIG_FILE)
    strict = True

    def __init__(self, meta: dict):
        self.meta = meta

    def select(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return state

    def write(self, directory: Path, state: dict, model_config, tokenizer_dir: Path | None) -> None:
        state = strip_prefixes(state)
        decoder = {k.removeprefix("decoder."): v for k, v in state.items() if k.startswith("decoder.")}
        FullWeights().write(directory, decoder, model_config, tokenizer_dir)
        write_reward_head(directory, state["score.weight"], self.meta)

    def read(self, directory: Path, model_config) -> dict[str, torch.Tensor]:
        state = {f"decoder.{k}": v for k, v in FullWeights().read(directory, model_config).items()}
        state["score.weight"] = read_weights(directory, REWARD_HEAD_FILE)["score.weight"]
        return state


def reward_base(base: Path):
    """(decoder in float32, tokenizer with a chat template) for the reward model's base."""
    if is_adapter_dir(base):
        decoder, tokenizer, meta = load_adapted_model(base, device="cpu", dtype=torch.float32, merge=True)
        tokenizer, _ = with_default_chat_template(tokenizer) if tokenizer is not None else \
            chat_tokenizer(Path(meta["base"]["path"]))
    else:
        decoder, info = load_model(base, device="cpu", dtype=torch.float32)
        tokenizer, _ = chat_tokenizer(base, info)
    resize_vocabulary(decoder, tokenizer.vocab_size)
    return decoder, tokenizer


def train_reward(cfg: RewardConfig, log=print) -> dict:
    t = cfg.train
    no_fsdp = "train.parallel=fsdp is not supported for reward models yet: use train.parallel=ddp"
    with training_session(t, log, no_fsdp) as (dist, device, log):
        decoder, tokenizer = reward_base(Path(cfg.base))
        if t.seq_len > decoder.config.max_seq_len:
            raise ConfigError(f"train.seq_len ({t.seq_len}) is longer than the base's context ({decoder.config.max_seq_len})")
        train_pairs, held = split_pairs(cfg, tokenizer)
        torch.manual_seed(t.seed)
        model = RewardModel(decoder).train()
        model.requires_grad_(True)
        tok_dir = save_run_tokenizer(tokenizer, Path(t.out_dir), dist)
        pad = tokenizer.eos_id if tokenizer.eos_id is not None else 0
        rows = t.batch_size * t.grad_accum * dist.world_size
        train_data = PreferenceBatches(train_pairs, rows, seed=t.seed, pad_id=pad, collate=collate_sequences)
        eval_data = PreferenceEvalBatches(held, t.eval_batch_size or t.batch_size, pad_id=pad,
                                          collate=collate_sequences) if held else None
        objective = RewardObjective(cfg.reward)
        eval_fn = (lambda m, ctx: objective.evaluate(m, eval_data, device, ctx, dist)) if eval_data else None
        n_params = sum(p.numel() for p in model.parameters())
        log(f"reward model on {cfg.base}: {len(train_pairs)} pairs ({len(held)} held out), {n_params:,} parameters")
        trainer = Trainer(cfg, model, train_data, None, tokenizer=None, tokenizer_dir=tok_dir, loss_fn=objective,
                          weight_fn=count_pairs, dist=dist, device=device, log=log,
                          weights=RewardWeights({"base": str(cfg.base)}), eval_fn=eval_fn)
        return trainer.fit()
