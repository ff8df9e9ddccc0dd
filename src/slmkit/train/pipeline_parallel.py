"""Pipeline parallelism over a `pp` mesh dimension, with torch.distributed.pipelining's stages and schedules.

    part, stages = split_decoder(decoder, pp_rank, pp_size, stages_per_rank)   # this rank's layers
    pipeline = Pipeline(stages, part, train_cfg, pp_group, device)
    summed_loss = pipeline.run(x, y, scale)    # x, y: [grad_accum * rows, seq]; backward done, grads in `part`

The decoder is cut by layer into pp × stages_per_rank stages: the first holds the embedding, the last the
final norm and the head; the layers are spread as evenly as possible (earlier stages get the extra ones).
With the interleaved schedule each rank holds 2 stages, rank r the stages r and r + pp (looped), so the
pipeline fills and drains in half the time. The micro-batches are the run's gradient-accumulation steps
(train.grad_accum); gpipe runs all forwards then all backwards, 1f1b alternates once full (activation memory
of pp micro-batches instead of all), interleaved is 1F1B over the virtual stages (Narayanan et al. 2021).

The loss is computed on the last stage, per micro-batch, as the Trainer defines it (the summed cross-entropy
times dp / the global number of targets), so gradients equal the single-process ones: the schedule's own
1/n_microbatches scaling is turned off (scale_grads=False).

A tied head (the embedding matrix, transposed) lives on two ranks: the first stage's embedding and the last
stage's head are two copies with the same initial values, whose gradients are summed after each step
(sum_tied_gradients, over a group of the two), so they take the same optimizer steps and stay equal — what one
shared matrix gets in a single process (Megatron does the same with its "embedding group").

Every parameter of this rank lives in `part` (a DecoderStage over all of this rank's layers, sharing their
modules with the stages), keyed by the full decoder's names ("blocks.3.attn.q_proj.weight"), so the
optimizer, gradient clipping and checkpoints treat it as a model whose other layers are elsewhere.
"""

from __future__ import annotations

import torch
import torch.distributed as torch_dist
import torch.nn.functional as F
from torch import nn
from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe, ScheduleInterleaved1F1B
from torch.utils.checkpoint import checkpoint

from slmkit.model.decoder import Decoder
from slmkit.model.loss import IGNORE_INDEX, chunked_cross_entropy

SCHEDULES = {"gpipe": ScheduleGPipe, "1f1b": Schedule1F1B, "interleaved": ScheduleInterleaved1F1B}


class DecoderStage(nn.Module):
    """Some layers of a Decoder (its own modules, not copies), with the embedding when `first` and the final
    norm and head when `last`. forward: ids [batch, seq] (first) or hidden [batch, seq, d_model] ->
    hidden, or logits [batch, seq, vocab] (last)."""

    def __init__(self, decoder: Decoder, layers: list[int], first: bool, last: bool, hidden_out: bool = False):
        super().__init__()
        self.config, self.first, self.last = decoder.config, first, last
        self.hidden_out = hidden_out  # the last stage returns final-norm hidden states (a chunked loss applies the head)
        self.gradient_checkpointing = decoder.gradient_checkpointing
        self.rope = decoder.rope
        if first:
            self.embed, self.pos_embed, self.embed_dropout = decoder.embed, decoder.pos_embed, decoder.embed_dropout
        self.blocks = nn.ModuleDict({str(i): decoder.blocks[i] for i in layers})
        if last:
            self.final_norm, self.head = decoder.final_norm, decoder.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(x.shape[1], device=x.device)[None]  # training rows: plain causal, no padding
        if self.first:
            x = Decoder.embed_tokens(self, x, positions)  # the decoder's own code (it reads embed, pos_embed, ...)
        rope = self.rope(positions, x.dtype) if self.rope is not None else None
        for block in self.blocks.values():
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                x, _ = checkpoint(block, x, rope, None, use_reentrant=False)
            else:
                x, _ = block(x, rope)
        if not self.last:
            return x
        x = self.final_norm(x)
        return x if self.hidden_out else Decoder.logits(self, x)


def stage_layers(n_layers: int, n_stages: int) -> list[list[int]]:
    """Layer indices of each stage, as even as possible: 5 layers over 2 stages -> [[0, 1, 2], [3, 4]]."""
    base, extra = divmod(n_layers, n_stages)
    out, start = [], 0
    for s in range(n_stages):
        size = base + (1 if s < extra else 0)
        out.append(list(range(start, start + size)))
        start += size
    return out


def split_decoder(decoder: Decoder, pp_rank: int, pp_size: int, stages_per_rank: int, hidden_out: bool = False):
    """(part, [(stage index, DecoderStage)]) for rank `pp_rank`: its stages r, r + pp, ... and one DecoderStage
    over all of them (`part`). The layers of other ranks are dropped from `decoder`'s memory (meta device); with a
    tied head, the last stage gets its own copy of the embedding matrix.
    `hidden_out`: the last stage returns hidden states, for a loss computed in chunks."""
    n_stages = pp_size * stages_per_rank
    layers = stage_layers(decoder.config.n_layers, n_stages)
    mine = [pp_rank + k * pp_size for k in range(stages_per_rank)]
    first, last = 0 in mine, n_stages - 1 in mine
    if decoder.config.tie_embeddings and last and not first:
        # the head's own copy of the embedding matrix; sum_tied_gradients keeps the two copies equal
        decoder.head.weight = nn.Parameter(decoder.embed.weight.detach().clone())
    owned = sorted(i for s in mine for i in layers[s])
    stages = [(s, DecoderStage(decoder, layers[s], s == 0, s == n_stages - 1, hidden_out)) for s in mine]
    part = DecoderStage(decoder, owned, first, last)
    for i, block in enumerate(decoder.blocks):
        if i not in owned:
            block.to("meta")
    if not first:
        decoder.embed.to("meta")
    if not last and not decoder.config.tie_embeddings:  # (a tied head is the embedding the first stage keeps)
        decoder.head.to("meta")
    return part, stages


def tied_embedding_group(shape, rank: int):
    """With a tied head under pp: the process group of this rank's first-stage and last-stage peers (the same dp
    and tp coordinates), which sum the two copies' gradients; None on the stages between. Collective: every rank
    creates every pair's group, in the same order."""
    mine = None
    for dp in range(shape.dp):
        for tp in range(shape.tp):
            pair = [(p * shape.dp + dp) * shape.tp + tp for p in (0, shape.pp - 1)]
            group = torch_dist.new_group(pair)
            if rank in pair:
                mine = group
    return mine


def sum_tied_gradients(part: nn.Module, group) -> None:
    """Add the first stage's embedding gradient and the last stage's head gradient (the same matrix, tied), so
    both copies take the same optimizer step, as the one shared matrix of a single process does."""
    weight = part.embed.weight if part.first else part.head.weight
    if weight.grad is not None:
        grad = weight.grad.to_local() if hasattr(weight.grad, "to_local") else weight.grad  # a DTensor's local shard
        torch_dist.all_reduce(grad, group=group)


class Pipeline:
    """This rank's stages and the schedule that runs one optimizer step's micro-batches through them."""

    def __init__(self, stages: list[tuple[int, nn.Module]], n_stages: int, schedule: str, n_microbatches: int,
                 pp_group, device: torch.device, loss_chunk_size: int | None = None):
        self.has_first = any(s == 0 for s, _ in stages)
        self.has_last = any(s == n_stages - 1 for s, _ in stages)
        pipe_stages = [PipelineStage(module, s, n_stages, device, group=pp_group) for s, module in stages]
        cls = SCHEDULES[schedule]
        if schedule == "interleaved":
            self.schedule = cls(pipe_stages, n_microbatches=n_microbatches, loss_fn=self._loss, scale_grads=False)
        else:
            self.schedule = cls(pipe_stages[0], n_microbatches=n_microbatches, loss_fn=self._loss, scale_grads=False)
        self.n_microbatches = n_microbatches
        last = [module for s, module in stages if s == n_stages - 1]
        # with a chunk size the last stage returns hidden states and the loss applies the head a chunk at a time
        self.chunk = loss_chunk_size
        self.head = (lambda hidden: Decoder.logits(last[0], hidden)) if last else None
        self.scale = 1.0
        self.summed: list[torch.Tensor] = []

    def _loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """One micro-batch's loss on the last stage: its summed cross-entropy, scaled as the Trainer scales."""
        if self.chunk:  # `logits` are the final-norm hidden states here
            count = (targets != IGNORE_INDEX).sum()
            summed = chunked_cross_entropy(logits, self.head, targets, self.chunk) * count
        else:
            summed = F.cross_entropy(logits.float().flatten(0, -2), targets.flatten(), ignore_index=IGNORE_INDEX,
                                     reduction="sum")
        self.summed.append(summed.detach())
        return summed * self.scale

    def run(self, x: torch.Tensor, y: torch.Tensor, scale: float) -> torch.Tensor:
        """Forward and backward of all micro-batches of x, y [n_microbatches * rows, seq]; returns the summed
        cross-entropy over them on the last stage (0 elsewhere)."""
        self.scale, self.summed = scale, []
        target = y if self.has_last else None
        losses = [] if self.has_last else None
        # return_outputs=False: the last stage would otherwise keep every micro-batch's logits to concatenate them
        if self.has_first:
            self.schedule.step(x, target=target, losses=losses, return_outputs=False)
        else:
            self.schedule.step(target=target, losses=losses, return_outputs=False)
        if not self.summed:
            return torch.zeros((), dtype=torch.float64, device=x.device)
        # the first step also calls the loss once on the stage's shape-inference output: keep the real ones
        return torch.stack(self.summed[-self.n_microbatches:]).double().sum()
