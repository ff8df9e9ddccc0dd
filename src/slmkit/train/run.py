"""`train(cfg)`: from a RunConfig to a trained model in cfg.train.out_dir; `train_from_recipe`, what `slm train` calls.

    from slmkit.train import load_run_config, train
    result = train(load_run_config("configs/demo.yaml", ["train.max_steps=200"]))

Both prepare the data when its shards are missing (rank 0, the others wait), check the model's
vocabulary against the data's tokenizer, build the model from the `model:` section, the loaders for
the global batch, and run the Trainer. `train_from_recipe` reads the recipe once, before preparing,
and gives the model the new tokenizer's vocabulary when the recipe leaves `model.vocab_size` out.
"""

from __future__ import annotations

import os

import torch

from slmkit.data import EvalBatches, Manifest, TrainBatches, manifest_exists, prepare, read_manifest
from slmkit.errors import ConfigError, DataError
from slmkit.model import Decoder, ModelConfig
from slmkit.train.batches import GlobalBatches
from slmkit.train.config import Recipe, RunConfig, read_recipe
from slmkit.train.distributed import setup_distributed
from slmkit.train.evaluation import limit_windows
from slmkit.train.trainer import Trainer


def ensure_data(cfg: RunConfig, dist, log=print) -> Manifest:
    """The manifest of the prepared shard directory (prepared here first when missing and allowed)."""
    data_dir = cfg.data.out_dir
    if not manifest_exists(data_dir):
        if not cfg.train.prepare_if_missing:
            raise DataError(f"no prepared data in {data_dir}: run 'slm prepare' first "
                            "or set train.prepare_if_missing=true")
        if dist.is_main:
            log(f"preparing data in {data_dir} (slm prepare) ...")
            prepare(cfg.data, log=log)
        dist.barrier()
    return read_manifest(data_dir)


def check_vocabulary(model: ModelConfig, manifest: Manifest) -> None:
    """ConfigError when the data holds ids the model has no embedding for."""
    if model.vocab_size < manifest.vocab_size:
        raise ConfigError(f"model.vocab_size ({model.vocab_size}) is smaller than the vocabulary of the data's "
                          f"tokenizer ({manifest.vocab_size}, in {manifest.tokenizer_dir}): leave model.vocab_size "
                          f"out to use the tokenizer's size, or set it to at least {manifest.vocab_size}")


def build_loaders(cfg: RunConfig, data_dir, tokenizer, data_parallel: int, eval_alone: bool = False):
    """(training batches of the global batch for `data_parallel` replicas, validation batches or None); with
    `eval_alone` one process evaluates every validation row (tp/pp runs evaluate a full copy on rank 0)."""
    t = cfg.train
    rows_per_step = t.batch_size * t.grad_accum * data_parallel
    train = GlobalBatches(TrainBatches(data_dir, rows_per_step, t.seq_len, seed=t.seed, rank=0, world_size=1,
                                       tokenizer=tokenizer, window_start=t.window_start))
    val = None
    if read_manifest(data_dir).split_tokens("val") > 1:
        val = limit_windows(EvalBatches(data_dir, t.eval_batch_size or t.batch_size, t.seq_len, split="val",
                                        tokenizer=tokenizer, verify=False,
                                        **(dict(rank=0, world_size=1) if eval_alone else {})), t.eval_windows)
    return train, val


def build_model(cfg: RunConfig) -> Decoder:
    if cfg.train.seq_len > cfg.model.max_seq_len:
        raise ConfigError(f"train.seq_len ({cfg.train.seq_len}) is longer than model.max_seq_len "
                          f"({cfg.model.max_seq_len})")
    torch.manual_seed(cfg.train.seed)  # the same seed gives the same initial weights on every rank
    return Decoder(cfg.model)


def train(cfg: RunConfig, log=print, loss_fn=None) -> dict:
    """Train with `cfg` as given (its model.vocab_size included)."""
    return _train(Recipe(cfg, vocab_from_data=False), log, loss_fn)


def train_from_recipe(path: str | os.PathLike | None, overrides: list[str], log=print) -> dict:
    """Read the recipe (once: every section is checked before anything is prepared), prepare its data
    when missing, and train; model.vocab_size, when the recipe leaves it out, is the data's tokenizer's."""
    return _train(read_recipe(path, overrides), log)


def _train(recipe: Recipe, log, loss_fn=None) -> dict:
    dist, device = setup_distributed(recipe.config.train)
    try:
        manifest = ensure_data(recipe.config, dist, log if dist.is_main else (lambda *a: None))
        cfg = recipe.for_data(manifest.vocab_size)
        check_vocabulary(cfg.model, manifest)
        tokenizer = manifest.load_tokenizer()
        model = build_model(cfg)
        train_data, val_data = build_loaders(cfg, manifest.directory, tokenizer, dist.dp_size,
                                             eval_alone=dist.shape.model_parallel)
        trainer = Trainer(cfg, model, train_data, val_data, tokenizer=tokenizer, tokenizer_dir=manifest.tokenizer_dir,
                          loss_fn=loss_fn, dist=dist, device=device, log=log)
        return trainer.fit()
    finally:
        dist.close()
