"""The decoder-only language model: token embedding -> blocks -> final norm -> output head.

    model = Decoder(ModelConfig(...))
    out = model(ids, targets)            # ids, targets: [batch, seq]; out.logits [batch, seq, vocab]
    out.loss.backward()                  # mean next-token cross-entropy (targets of -100 are ignored)
    (out.loss + out.aux_loss).backward() # for MoE models: add the router's auxiliary losses
    out = model(ids, targets, document_ids=docs)  # packed rows: docs [batch, seq], -1 on padding

Targets are the ids shifted left by one (targets[:, t] = ids[:, t+1]), as in nanoGPT.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from slmkit.errors import SlmError
from slmkit.model.block import Block
from slmkit.model.checkpoint import load_tensors, read_config, read_weights, save_pretrained
from slmkit.model.config import ModelConfig
from slmkit.model.counting import count_parameters
from slmkit.model.kv_cache import KVCache, document_causal_mask, padded_causal_mask
from slmkit.model.loss import chunked_cross_entropy, cross_entropy
from slmkit.model.moe import Experts, load_balancing_loss, router_z_loss
from slmkit.model.norms import make_norm
from slmkit.model.positions import RotaryEmbedding, sinusoidal_embedding


@dataclass
class DecoderOutput:
    logits: torch.Tensor | None  # [batch, seq, vocab] (None when the loss was computed in chunks)
    loss: torch.Tensor | None = None  # mean cross-entropy over non-ignored targets
    aux_loss: torch.Tensor | None = None  # MoE: coef-weighted balance + z losses, ready to add to `loss`
    load_balancing_loss: torch.Tensor | None = None  # MoE: unweighted Switch balance loss
    router_z_loss: torch.Tensor | None = None  # MoE: unweighted router z-loss
    hidden: torch.Tensor | None = None  # [batch, seq, d_model] after the final norm, with hidden_only=True


class Decoder(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_embed = nn.Embedding(config.max_seq_len, config.d_model) if config.positions == "learned" else None
        self.rope = RotaryEmbedding(config) if config.positions == "rope" else None
        self.embed_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layers))
        self.final_norm = make_norm(config.norm, config.d_model, config.norm_eps)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.head.weight = self.embed.weight
        self.gradient_checkpointing = config.gradient_checkpointing
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.init_std
        # GPT-2: projections that write into the residual stream are scaled down by sqrt(2 * n_layers),
        # so the residual's variance does not grow with depth.
        residual_std = std / math.sqrt(2 * self.config.n_layers)
        if isinstance(module, nn.Linear):
            residual = getattr(module, "is_residual_projection", False)
            if residual and self.config.zero_init_residual:  # each block starts as the identity
                nn.init.zeros_(module.weight)
            else:
                nn.init.normal_(module.weight, 0.0, residual_std if residual else std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, 0.0, std)
        elif isinstance(module, Experts):
            nn.init.normal_(module.gate_proj, 0.0, std)
            nn.init.normal_(module.up_proj, 0.0, std)
            if self.config.zero_init_residual:
                nn.init.zeros_(module.down_proj)
            else:
                nn.init.normal_(module.down_proj, 0.0, residual_std)

    def forward(
        self,
        ids: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        attention_mask: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        document_ids: torch.Tensor | None = None,
        cache: KVCache | None = None,
        cache_row: int = 0,
        loss_chunk_size: int | None = None,
        last_logits_only: bool = False,
        hidden_only: bool = False,
    ) -> DecoderOutput:
        """ids: [batch, seq] token ids; targets: [batch, seq] next-token ids or -100 to ignore.

        attention_mask: [batch, seq], 1 for real tokens and 0 for padding (left padding for generation).
            Padding is never attended to and does not advance positions. Or a bool [batch, 1, seq, seq] mask
            (True = may attend; every query must see at least itself) with explicit `positions`.
        positions: [batch or 1, seq] explicit positions; by default they count the real tokens before each
            token in its row (plus what `cache` already holds), or in its document with `document_ids`.
        document_ids: [batch, seq] ints for packed rows (several examples per row): which example each
            token belongs to, -1 for padding. Attention stays within a document and positions restart at
            each one, so a packed row computes what its examples would alone. Not with a cache.
        cache: a `KVCache`; row b of `ids` is appended to cache row cache_row+b at that row's own length
            (prefill, several tokens, one token per row for rows of different lengths, speculative
            verification). Every token is real: `attention_mask` is for padded batches without a cache.
        loss_chunk_size: compute the loss this many positions at a time without keeping full logits;
            `logits` is then None.
        last_logits_only: return logits for the last position only ([batch, 1, vocab]), which is all
            generation needs after a prefill; ignored when targets are given.
        hidden_only: return the final-norm hidden states (`hidden`) instead of logits, for a caller that
            needs logits at a few positions only (`model.logits(hidden[rows, cols])`); ignored with targets.
        """
        mask, positions, step, attention_mask = self._plan_attention(ids, attention_mask, positions, document_ids,
                                                                     cache, cache_row)
        if self.pos_embed is not None and int(positions.max()) >= self.config.max_seq_len:
            raise SlmError(f"position {int(positions.max())} is beyond this model's max_seq_len "
                           f"{self.config.max_seq_len} (learned positions); use a shorter input")

        x = self.embed_tokens(ids, positions)
        rope = self.rope(positions, x.dtype) if self.rope is not None else None

        all_router_logits = []
        for block in self.blocks:
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled() and cache is None:
                x, router_logits = checkpoint(block, x, rope, mask, use_reentrant=False)
            else:
                x, router_logits = block(x, rope, mask, cache, step)
            if router_logits is not None:
                all_router_logits.append(router_logits)
        if cache is not None:
            cache.commit(step)
        x = self.final_norm(x)

        out = DecoderOutput(logits=None)
        if hidden_only and targets is None:
            out.hidden = x
        elif targets is not None and loss_chunk_size:
            out.loss = chunked_cross_entropy(x, self.logits, targets, loss_chunk_size)
        else:
            out.logits = self.logits(x[:, -1:] if last_logits_only and targets is None else x)
            if targets is not None:
                out.loss = cross_entropy(out.logits, targets)
        if all_router_logits:
            out.load_balancing_loss = load_balancing_loss(all_router_logits, self.config.moe_top_k, attention_mask)
            out.router_z_loss = router_z_loss(all_router_logits, attention_mask)
            out.aux_loss = (self.config.moe_aux_loss_coef * out.load_balancing_loss
                            + self.config.moe_z_loss_coef * out.router_z_loss)
        return out

    def embed_tokens(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """ids [batch, seq], positions [batch or 1, seq] -> the first block's input [batch, seq, d_model]
        (token embedding + learned or sinusoidal positions, then dropout; rotary positions act in attention).
        A pipeline's first stage calls it alone."""
        x = self.embed(ids)
        if self.pos_embed is not None:
            x = x + self.pos_embed(positions)
        elif self.config.positions == "sinusoidal":
            x = x + sinusoidal_embedding(positions, self.config.d_model, x.dtype)
        return self.embed_dropout(x)

    @staticmethod
    def _plan_attention(ids, attention_mask, positions, document_ids, cache, cache_row):
        """(mask, positions, cache step, attention_mask) for one forward; mask is bool [batch, 1, seq, keys]
        or None for plain causal attention (the fused-kernel path)."""
        batch, seq = ids.shape
        step = None
        mask = None
        if attention_mask is not None and attention_mask.dim() == 4:
            # A caller-made mask (e.g. several continuations sharing one context in a row), as HF allows.
            if cache is not None or document_ids is not None or positions is None:
                raise SlmError("a 4-D attention_mask [batch, 1, seq, seq] needs explicit positions and no cache "
                               "or document_ids")
            return attention_mask.to(torch.bool), positions, None, None
        if document_ids is not None:
            if cache is not None:
                raise SlmError("document_ids (packed rows) cannot be combined with a KV cache: decode one "
                               "conversation per cache row instead")
            if attention_mask is not None:
                document_ids = document_ids.masked_fill(~attention_mask.to(torch.bool), -1)
            attention_mask = (document_ids >= 0).long()  # for the MoE losses: padding is not routed
            one_document = bool((document_ids == document_ids[:, :1]).all()) and bool((document_ids[:, 0] >= 0).all())
            if not one_document:  # a row holding one whole document keeps the mask-free path
                mask, document_positions = document_causal_mask(document_ids)
                positions = document_positions if positions is None else positions
        elif cache is not None:
            if attention_mask is not None:
                raise SlmError("attention_mask cannot be combined with a KV cache: prefill rows of different "
                               "lengths one row at a time (cache_row=...), then decode them together")
            step = cache.prepare(batch, seq, cache_row)
            mask = step.attention_mask
            positions = step.positions if positions is None else positions
        elif attention_mask is not None and not bool(attention_mask.all()):
            # Padding present: an explicit mask. (An all-ones mask keeps the mask-free causal path.)
            real = attention_mask.to(torch.bool)
            mask = padded_causal_mask(real)
            if positions is None:
                positions = (real.long().cumsum(-1) - 1).clamp(min=0)
        if positions is None:
            positions = torch.arange(seq, device=ids.device)[None]
        return mask, positions, step, attention_mask

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Final-norm hidden states [..., d_model] -> logits [..., vocab]: the head, then the soft cap
        cap * tanh(logits / cap) when config.logit_softcap is set (it bounds every logit in (-cap, cap))."""
        logits = self.head(hidden)
        cap = self.config.logit_softcap
        return logits if cap is None else cap * torch.tanh(logits / cap)

    # --- conveniences -----------------------------------------------------------------------------
    def num_parameters(self, non_embedding: bool = False) -> int:
        """Distinct parameters (a tied head counts once); non_embedding drops token/position tables and head."""
        return count_parameters(self.config)["non_embedding" if non_embedding else "total"]

    def save_pretrained(self, directory, tokenizer_dir=None) -> None:
        """Write our checkpoint directory (see checkpoint.py)."""
        save_pretrained(self, directory, tokenizer_dir=tokenizer_dir)

    @classmethod
    def from_pretrained(cls, directory, device=None, dtype=None) -> "Decoder":
        """Load our checkpoint directory (weights via safetensors only; nothing is unpickled)."""
        return cls.from_tensors(read_config(directory), read_weights(directory), str(directory), device, dtype)

    @classmethod
    def from_tensors(cls, config: ModelConfig, tensors: dict, source: str, device=None, dtype=None) -> "Decoder":
        """A model of `config` holding exactly `tensors` (our names; built on the meta device, so no
        throw-away initialisation); `source` names where they came from in errors."""
        with torch.device("meta"):
            model = cls(config)
        load_tensors(model, tensors, source=source)
        return model.to(device=device, dtype=dtype) if (device or dtype) else model
