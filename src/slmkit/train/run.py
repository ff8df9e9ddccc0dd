"""`train(cfg)`: from a RunConfig to a trained model in cfg.train.out_dir (what `slm train` calls).

    from slmkit.train import load_run_config, train
    result = train(load_run_config("configs/demo.yaml", ["train.max_steps=200"]))

Prepares the data when its shards are missing (rank 0, the others wait), builds the model from the
`model:` section with the tokenizer's vocabulary, the loaders for the global batch, and runs the Trainer.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from slmkit.errors import ConfigError, DataError
from slmkit.train.config import RunConfig, load_run_config, manifest_vocab_size


def ensure_data(cfg: RunConfig, dist, log=print) -> Path:
    """The prepared shard directory (prepared here first when missing and allowed)."""
    data_dir = Path(cfg.data.out_dir)
    if not (data_dir / "manifest.json").is_file():
        if not cfg.train.prepare_if_missing:
            raise DataError(f"no prepared data in {data_dir}: run 'slm prepare' first "
                            "or set train.prepare_if_missing=true")
        if dist.is_main:
            from slmkit.data.prepare import prepare

            log(f"preparing data in {data_dir} (slm prepare) ...")
            prepare(cfg.data, log=log)
        dist.barrier()
    return data_dir


def build_loaders(cfg: RunConfig, data_dir: Path, tokenizer, world_size: int):
    from slmkit.data.loaders import EvalBatches, TrainBatches
    from slmkit.data.manifest import read_manifest
    from slmkit.train.batches import GlobalBatches

    t = cfg.train
    rows_per_step = t.batch_size * t.grad_accum * world_size
    train = GlobalBatches(TrainBatches(data_dir, rows_per_step, t.seq_len, seed=t.seed, rank=0, world_size=1,
                                       tokenizer=tokenizer))
    splits = read_manifest(data_dir).data["splits"]
    val = None
    if splits.get("val", {}).get("tokens", 0) > 1:
        from slmkit.train.evaluation import limit_windows

        val = limit_windows(EvalBatches(data_dir, t.eval_batch_size or t.batch_size, t.seq_len, split="val",
                                        tokenizer=tokenizer, verify=False), t.eval_windows)
    return train, val


def build_model(cfg: RunConfig, tokenizer):
    from slmkit.model import Decoder

    mcfg = cfg.model
    if tokenizer is not None and mcfg.vocab_size < tokenizer.vocab_size:
        raise ConfigError(f"model.vocab_size ({mcfg.vocab_size}) is smaller than the tokenizer's "
                          f"({tokenizer.vocab_size}); leave it out to use the tokenizer's size")
    if cfg.train.seq_len > mcfg.max_seq_len:
        raise ConfigError(f"train.seq_len ({cfg.train.seq_len}) is longer than model.max_seq_len "
                          f"({mcfg.max_seq_len})")
    torch.manual_seed(cfg.train.seed)  # the same seed gives the same initial weights on every rank
    return Decoder(mcfg)


def train(cfg: RunConfig, log=print, loss_fn=None, _setup=None) -> dict:
    from slmkit.data.prepare.tokenizing import load_data_tokenizer
    from slmkit.train.distributed import setup_distributed
    from slmkit.train.trainer import Trainer

    dist, device = _setup or setup_distributed(cfg.train)
    try:
        data_dir = ensure_data(cfg, dist, log if dist.is_main else (lambda *a: None))
        vocab = manifest_vocab_size(data_dir)
        tokenizer = load_data_tokenizer(data_dir / "tokenizer")
        if vocab is not None and cfg.model.vocab_size < vocab:
            raise ConfigError(f"model.vocab_size ({cfg.model.vocab_size}) is smaller than the data's tokenizer "
                              f"({vocab}); leave it out to use the tokenizer's size")
        model = build_model(cfg, tokenizer)
        train_data, val_data = build_loaders(cfg, data_dir, tokenizer, dist.world_size)
        trainer = Trainer(cfg, model, train_data, val_data, tokenizer=tokenizer, tokenizer_dir=data_dir / "tokenizer",
                          loss_fn=loss_fn, dist=dist, device=device, log=log)
        return trainer.fit()
    finally:
        dist.close()


def train_from_recipe(path: str | os.PathLike | None, overrides: list[str], log=print) -> dict:
    """Load a recipe; when the data is not prepared yet, prepare it and re-read the recipe so that
    the model's vocabulary defaults to the new tokenizer's."""
    cfg = load_run_config(path, overrides)
    data_dir = Path(cfg.data.out_dir)
    if not (data_dir / "manifest.json").is_file() and cfg.train.prepare_if_missing:
        from slmkit.train.distributed import setup_distributed

        setup = setup_distributed(cfg.train)
        try:
            ensure_data(cfg, setup[0], log if setup[0].is_main else (lambda *a: None))
            cfg = load_run_config(path, overrides)
        except BaseException:
            setup[0].close()
            raise
        return train(cfg, log=log, _setup=setup)
    return train(cfg, log=log)
