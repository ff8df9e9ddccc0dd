"""`align(cfg)`: DPO of a policy on preference pairs, on the one Trainer; what `slm align` runs.

    from slmkit.align.config import read_align_config
    from slmkit.align.run import align
    result = align(read_align_config("configs/dpo-lora.yaml", ["policy=runs/demo-sft"]))

The policy is what DPO starts from and, frozen, its reference:
- a model directory (a pretraining or full fine-tuning run, an HF folder) with method lora/qlora: a fresh adapter
  trains on it and the reference is the same model with the adapter switched off (no second copy in memory);
- an adapter directory (an `slm finetune` LoRA run): that adapter trains on, over its own base, and the reference
  is a frozen copy of the adapted model as it starts; with method full the adapter is merged first;
- method full on a model directory: every weight trains and the reference is a frozen copy.
`dpo.reference: precomputed` instead runs the reference once over every pair before training and keeps two
numbers per pair (half the forward passes per step, no copy). The run directory ends up as an adapter directory
(LoRA) or an ordinary model directory (full), loadable by every verb like a fine-tune's.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch

from slmkit.align.config import AlignConfig
from slmkit.align.dpo_objective import DPOObjective, count_pairs
from slmkit.align.preference_batches import PreferenceBatches, PreferenceEvalBatches, tokenize_pairs
from slmkit.align.preference_data import load_preference_pairs
from slmkit.align.reference import Reference, precomputed_reference
from slmkit.errors import ConfigError, DataError
from slmkit.finetune.adapter import (
    AdapterWeights, adapter_meta, base_fingerprint, is_adapter_dir, load_adapted_model, read_adapter_meta,
    read_adapter_tensors, resize_vocabulary, trainable_names,
)
from slmkit.finetune.lora import lora_layers
from slmkit.finetune.lora import LoraConfig
from slmkit.finetune.run import chat_sample_prompts, chat_tokenizer, make_trainable
from slmkit.finetune.token_rows import keep_base_token_rows
from slmkit.loading import load_model
from slmkit.tokenizer.chat_template import with_default_chat_template
from slmkit.train.distributed import training_session
from slmkit.train.precision import autocast
from slmkit.train.trainer import Trainer


def split_pairs(cfg: AlignConfig, tokenizer):
    """(train pairs, held-out pairs or []) tokenized with their completion masks."""
    d, seq_len = cfg.data, cfg.train.seq_len
    train = load_preference_pairs(d.train, limit=d.limit)
    if d.eval:
        held = load_preference_pairs(d.eval)
    else:
        n_eval = int(len(train) * d.eval_fraction)
        train, held = (train[:-n_eval], train[-n_eval:]) if n_eval else (train, [])
    if not train:
        raise DataError(f"{d.train}: no training pairs")
    train, held = tokenize_pairs(tokenizer, train, seq_len), tokenize_pairs(tokenizer, held, seq_len)
    cut = sum(e.truncated for e in train + held)
    if cut:
        warnings.warn(f"{cut} of {len(train) + len(held)} pairs were longer than train.seq_len + 1 = {seq_len + 1} "
                      "tokens: their prompts lost their start (and over-long replies their end)", stacklevel=2)
    return train, held


def prepare_policy(cfg, reference: str, allow_precomputed: bool = True):
    """(model in float32 with its trainable set, tokenizer, Trainer weights object, frozen copy or None, reference
    mode) for an AlignConfig or RLConfig (`policy`, `method`, `lora`, `train.seed`); `reference` is the asked-for
    mode (auto | adapters_off | copy | precomputed | none); RL, whose completions are new at every step, passes
    allow_precomputed=False."""
    policy = Path(cfg.policy)
    if is_adapter_dir(policy):
        return _adapter_policy(cfg, policy, reference)
    model, info = load_model(policy, device="cpu", dtype=torch.float32)
    fingerprint, base_vocab = base_fingerprint(model), model.config.vocab_size
    tokenizer, _ = chat_tokenizer(policy, info)
    resize_vocabulary(model, tokenizer.vocab_size)
    resized = model.config.vocab_size > base_vocab
    mode = _reference_mode(cfg.method if allow_precomputed else "lora", reference,
                           trains_whole_modules=cfg.method == "full" or resized or bool(cfg.lora.train_modules))
    frozen = _frozen_copy(model) if mode == "copy" else None
    torch.manual_seed(cfg.train.seed)  # the adapters' initial values
    modules = make_trainable(model, cfg, base_vocab)
    weights = None
    if cfg.method != "full":
        meta = adapter_meta(cfg.lora, modules, str(policy), fingerprint, base_vocab, model.config.vocab_size,
                            "nf4" if cfg.method == "qlora" else None)
        weights = AdapterWeights(meta, trainable_names(model))
    return model, tokenizer, weights, frozen, mode


def _reference_mode(method: str, mode: str, trains_whole_modules: bool) -> str:
    """adapters_off is the starting policy only when nothing but adapters trains: an embedding trained in full
    (new chat tokens, lora.train_modules) would leak into it. Then a frozen copy, or for QLoRA (memory first)
    precomputed log-probs."""
    if mode == "auto":
        return "adapters_off" if not trains_whole_modules else ("precomputed" if method == "qlora" else "copy")
    if mode == "adapters_off" and trains_whole_modules:
        raise ConfigError("reference=adapters_off would not be the starting policy: whole modules train beside "
                          "the adapters (the embedding, for new chat tokens, or lora.train_modules); use "
                          "reference=copy or precomputed (or auto)")
    return mode


def _adapter_policy(cfg, policy: Path, reference: str):
    """An SFT adapter as the policy: train it on (lora/qlora) or merge it and train everything (full)."""
    model, tokenizer, meta = load_adapted_model(policy, device="cpu", dtype=torch.float32, merge=cfg.method == "full")
    model.train()
    if tokenizer is None:
        tokenizer, _ = chat_tokenizer(Path(meta["base"]["path"]))
    tokenizer, _ = with_default_chat_template(tokenizer)
    if tokenizer.vocab_size > model.config.vocab_size:
        raise ConfigError(f"{policy}: its tokenizer has {tokenizer.vocab_size} ids but the model {model.config.vocab_size}")
    if reference == "adapters_off":
        raise ConfigError(f"{policy} is an adapter: switching it off would give its base, not the policy, as the "
                          "reference; use reference=copy (the default) or precomputed")
    frozen = _frozen_copy(model) if reference in ("auto", "copy") else None
    weights = None
    if cfg.method == "full":
        model.requires_grad_(True)
    else:
        names = set(read_adapter_tensors(policy))
        for name, p in model.named_parameters():
            p.requires_grad_(name in names)
        if LoraConfig(**meta["lora"]).token_rows == "new":  # the SFT's added chat tokens keep learning alone
            keep_base_token_rows(model, meta["base"]["vocab_size"])
        weights = AdapterWeights(read_adapter_meta(policy), names)
    mode = "copy" if reference == "auto" else reference
    return model, tokenizer, weights, frozen, mode


def _frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    frozen = copy.deepcopy(model).eval()
    frozen.requires_grad_(False)
    return frozen


def save_run_tokenizer(tokenizer, run_dir: Path, dist) -> Path:
    """RUN/tokenizer, written by rank 0 before any rank reads it: what the Trainer copies into what it writes."""
    tok_dir = run_dir / "tokenizer"
    if dist.is_main:
        tokenizer.save(tok_dir)
    dist.barrier()
    return tok_dir


def align(cfg: AlignConfig, log=print) -> dict:
    t = cfg.train
    no_fsdp = "train.parallel=fsdp is not supported for DPO yet: use train.parallel=ddp"
    with training_session(t, log, no_fsdp) as (dist, device, log):
        model, tokenizer, weights, frozen, mode = prepare_policy(cfg, cfg.dpo.reference)
        if t.seq_len > model.config.max_seq_len:
            raise ConfigError(f"train.seq_len ({t.seq_len}) is longer than the policy's context "
                              f"({model.config.max_seq_len})")
        train_pairs, held = split_pairs(cfg, tokenizer)
        tok_dir = save_run_tokenizer(tokenizer, Path(t.out_dir), dist)
        pad = tokenizer.eos_id if tokenizer.eos_id is not None else 0
        train_data = PreferenceBatches(train_pairs, t.batch_size * t.grad_accum * dist.world_size, seed=t.seed, pad_id=pad)
        eval_data = PreferenceEvalBatches(held, t.eval_batch_size or t.batch_size, pad_id=pad) if held else None
        model.to(device)
        reference = _reference(mode, model, frozen, [train_data] + ([eval_data] if eval_data else []), t, device)
        objective = DPOObjective(cfg.dpo, reference)
        ctx_eval = (lambda m, ctx: objective.evaluate(m, eval_data, device, ctx, dist)) if eval_data else None
        t.sample_prompts = chat_sample_prompts(tokenizer, t.sample_prompts)
        n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
        log(f"DPO ({cfg.dpo.loss_type}, beta {cfg.dpo.beta}, reference {mode}) of {cfg.policy}: {len(train_pairs)} "
            f"pairs ({len(held)} held out), {n_train:,} trainable parameters"
            + (f", {len(list(lora_layers(model)))} LoRA layers" if weights else ""))
        trainer = Trainer(cfg, model, train_data, None, tokenizer=tokenizer, tokenizer_dir=tok_dir, loss_fn=objective,
                          weight_fn=count_pairs, dist=dist, device=device, log=log, weights=weights, eval_fn=ctx_eval)
        return trainer.fit()


def _reference(mode: str, model, frozen, sources: list, t, device) -> Reference:
    if mode != "precomputed":
        if frozen is not None:
            frozen.to(device)
        return Reference(mode, model, frozen)
    live = Reference("copy", model, model)  # before training the policy is its own reference
    ctx = lambda: autocast(t.precision, device, False)  # noqa: E731
    return precomputed_reference(live, sources, device, ctx, t.eval_batch_size or t.batch_size)
