"""`finetune(cfg)`: chat SFT of a base model on the one Trainer (full, LoRA or QLoRA); what `slm finetune` runs.

    from slmkit.finetune.config import read_finetune_config
    from slmkit.finetune.run import finetune
    result = finetune(read_finetune_config("configs/sft-lora.yaml", ["base=runs/demo"]))

Steps: load the base in float32, fingerprint it, give its tokenizer a ChatML template when it has none
(the new special tokens grow the embedding, which is then trained in full), tokenize the chats with the
assistant-only mask, make the method's trainable set (everything; adapters; adapters over an NF4 base),
and hand the Trainer the packed batches and the SFT loss. A LoRA run's directory ends up as an adapter
directory (adapter.json, adapter.safetensors, tokenizer) that `slm chat`, `slm generate`, `slm serve
--adapter` and `slm export` load with its base; a full fine-tune's is an ordinary model directory.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from slmkit.errors import ConfigError, DataError
from slmkit.finetune.adapter import (
    AdapterWeights, adapter_meta, base_fingerprint, resize_vocabulary, trainable_names,
)
from slmkit.finetune.assistant_mask import tokenize_conversations
from slmkit.finetune.chat_data import load_sft_examples
from slmkit.finetune.config import FinetuneConfig
from slmkit.finetune.lora import LoraConfig, add_lora
from slmkit.finetune.token_rows import keep_base_token_rows
from slmkit.finetune.sft_batches import SFTBatches, SFTEvalBatches, sft_loss
from slmkit.loading import load_model
from slmkit.quant import quantize_model
from slmkit.tokenizer import load_tokenizer
from slmkit.tokenizer.chat_template import render_chat, with_default_chat_template
from slmkit.train.distributed import setup_distributed
from slmkit.train.trainer import Trainer


class EvalPairs:
    """SFTEvalBatches as the (x, y) batches the Trainer's evaluation scores: one right-padded example per
    row, so plain causal attention is exact and the loss is over assistant tokens only."""

    def __init__(self, batches: SFTEvalBatches):
        self.batches = batches

    def __iter__(self):
        yield from self.batches.pairs()


def chat_tokenizer(base_dir: Path, info=None):
    """(tokenizer with a chat template, ids it added) for the base at `base_dir` (`info`: its ModelInfo,
    whose file may carry the tokenizer, as a GGUF file does)."""
    tokenizer = info.load_tokenizer() if info is not None else None
    if tokenizer is None and (base_dir / "tokenizer.json").is_file():
        tokenizer = load_tokenizer(base_dir)
    if tokenizer is None:
        raise ConfigError(f"{base_dir} has no tokenizer.json: chat fine-tuning needs the base's tokenizer")
    return with_default_chat_template(tokenizer)


def split_examples(cfg: FinetuneConfig, tokenizer):
    """(train examples, held-out examples or []) tokenized with the assistant-only mask."""
    train = load_sft_examples(cfg.data.train, limit=cfg.data.limit)
    if cfg.data.eval:
        held = load_sft_examples(cfg.data.eval)
    else:
        n_eval = int(len(train) * cfg.data.eval_fraction)
        train, held = (train[:-n_eval], train[-n_eval:]) if n_eval else (train, [])
    if not train:
        raise DataError(f"{cfg.data.train}: no training examples")
    return tokenize_conversations(tokenizer, train), tokenize_conversations(tokenizer, held)


def make_trainable(model, cfg: FinetuneConfig, base_vocab: int) -> list[str]:
    """Apply the method to `model` in place; returns the LoRA-wrapped module names (none for full)."""
    if cfg.method == "full":
        model.requires_grad_(True)
        return []
    lora = cfg.lora
    resized = model.config.vocab_size > base_vocab
    if resized:  # new token rows must learn: the embedding (and an untied head) train, by default their new rows only
        extra = ["embed"] + ([] if model.config.tie_embeddings else ["head"])
        lora = dataclasses.replace(lora, train_modules=sorted(set(lora.train_modules) | set(extra)))
        cfg.lora = lora
    if cfg.method == "qlora":
        quantize_model(model, "nf4", include_head=False)
    names = add_lora(model, LoraConfig(**dataclasses.asdict(lora)))
    if resized and lora.token_rows == "new":
        keep_base_token_rows(model, base_vocab)
    return names


def chat_sample_prompts(tokenizer, prompts: list[str]) -> list[str]:
    return [render_chat(tokenizer, [{"role": "user", "content": p}], add_generation_prompt=True) for p in prompts]


def finetune(cfg: FinetuneConfig, log=print) -> dict:
    t = cfg.train
    dist, device = setup_distributed(t)
    log = log if dist.is_main else (lambda *a, **k: None)
    try:
        if dist.enabled and t.parallel == "fsdp" and cfg.method != "full":
            # measured: the steps match one process, then the run hangs at its end (frozen base under FSDP2)
            raise ConfigError("train.parallel=fsdp is not supported for LoRA/QLoRA fine-tunes yet: use "
                              "train.parallel=ddp (the base is frozen, so DDP only syncs the small adapters)")
        base_dir = Path(cfg.base)
        model, info = load_model(base_dir, device="cpu", dtype=torch.float32)
        model.train()
        fingerprint, base_vocab = base_fingerprint(model), model.config.vocab_size
        tokenizer, added = chat_tokenizer(base_dir, info)
        resize_vocabulary(model, tokenizer.vocab_size)
        if t.seq_len > model.config.max_seq_len:
            raise ConfigError(f"train.seq_len ({t.seq_len}) is longer than the base's context "
                              f"({model.config.max_seq_len})")
        train_examples, held = split_examples(cfg, tokenizer)
        torch.manual_seed(t.seed)  # the adapters' initial values
        modules = make_trainable(model, cfg, base_vocab)
        run_dir = Path(t.out_dir)
        tok_dir = run_dir / "tokenizer"
        if dist.is_main:
            tokenizer.save(tok_dir)
        dist.barrier()
        weights = None
        if cfg.method != "full":
            meta = adapter_meta(cfg.lora, modules, str(base_dir), fingerprint, base_vocab, model.config.vocab_size,
                                "nf4" if cfg.method == "qlora" else None)
            weights = AdapterWeights(meta, trainable_names(model))
        rows = t.batch_size * t.grad_accum * dist.world_size
        pad = tokenizer.eos_id if tokenizer.eos_id is not None else 0
        train_data = SFTBatches(train_examples, rows, t.seq_len, seed=t.seed, pack=cfg.data.pack, pad_id=pad)
        eval_data = EvalPairs(SFTEvalBatches(held, t.eval_batch_size or t.batch_size, t.seq_len, pad_id=pad)) \
            if held else None
        t.sample_prompts = chat_sample_prompts(tokenizer, t.sample_prompts)
        n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
        log(f"{cfg.method} fine-tune of {base_dir}: {len(train_examples)} examples ({len(held)} held out), "
            f"{n_train:,} trainable parameters" + (f", added tokens {added}" if added else ""))
        trainer = Trainer(cfg, model, train_data, eval_data, tokenizer=tokenizer, tokenizer_dir=tok_dir,
                          loss_fn=lambda m, b: sft_loss(m, b, t.loss_chunk_size), dist=dist, device=device,
                          log=log, weights=weights)
        return trainer.fit()
    finally:
        dist.close()
