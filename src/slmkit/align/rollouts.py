"""GRPO's batch source: each draw samples `group_size` completions per prompt from the current policy.

    source = RolloutBatches(policy, tokenizer, prompts, reward_fn, settings, rows_per_step=16, seed=0)
    batch = source.next_batch()         # what the Trainer asks for at each optimizer step

Rollouts go through infer's batched engine (`Generator`: KV cache, rows joining and leaving between decode
steps), rebuilt at every draw because its one-token step snapshots the weights. A completion's tokens end with
the EOS it stopped on (so the policy learns to stop); one cut by max_new_tokens has none. The batch: input_ids /
labels [rows, width] (prompt + completion, labels -100 outside the completion, right-padded), rewards and
advantages [rows], rollout_tokens_per_s [rows] (the draw's completion tokens per second of generation, the
same in every row), ref_logps [rows, width] when a KL term needs the reference, old_logps [rows, width] when a
rollout batch serves several optimizer steps (settings.iterations > 1; then the same batch is returned that many
times and old_logps, the sampling policy's, make the clipped ratio bite). That is GRPO's `postprocess`; PPO's
(ppo_objective.py) adds per-token advantages, returns and old values instead. The Trainer's count_targets weighs a
batch by its completion tokens: token-level normalisation over the whole optimizer step.

Determinism and resume: the prompts of a draw come from a shuffle seeded by (seed, epoch), the sampling seed
from (seed, draw), so the same weights draw the same batch; the state is (epoch, position, draws) plus a batch
being replayed, so a run resumed from a checkpoint continues exactly.
"""

from __future__ import annotations

import hashlib
import time
import warnings

import numpy as np
import torch

from slmkit.align.completion_logps import token_logps
from slmkit.align.grpo_loss import group_advantages
from slmkit.align.prompt_data import PromptRecord
from slmkit.align.rule_rewards import Rollout
from slmkit.errors import DataError
from slmkit.infer import Generator
from slmkit.infer.sampling import SamplingParams
from slmkit.loading import eos_ids_for
from slmkit.model.loss import IGNORE_INDEX
from slmkit.tokenizer.chat_template import render_chat


class RolloutBatches:
    def __init__(self, policy, tokenizer, prompts: list[PromptRecord], reward_fn, settings, rows_per_step: int,
                 seed: int = 0, reference=None, device="cpu", postprocess=None):
        if rows_per_step % settings.group_size:
            raise DataError(f"a step's {rows_per_step} rows (batch_size x grad_accum x processes) must be whole groups "
                            f"of grpo.group_size = {settings.group_size}")
        self.policy, self.tokenizer, self.prompts, self.reward_fn = policy, tokenizer, prompts, reward_fn
        self.settings, self.rows_per_step, self.seed, self.reference, self.device = \
            settings, rows_per_step, seed, reference, device
        self.postprocess = postprocess or grpo_postprocess  # adds the advantages (and what the loss needs) to a batch
        encoded = [tokenizer.encode(render_chat(tokenizer, p.messages, add_generation_prompt=True)) for p in prompts]
        self.prompts, self.prompt_ids = self._fitting(prompts, encoded, policy.config.max_seq_len)
        self.eos_ids = eos_ids_for(tokenizer)
        self.pad_id = tokenizer.eos_id if tokenizer.eos_id is not None else 0
        self.fingerprint = hashlib.sha256(repr(self.prompt_ids).encode()).hexdigest()[:16]
        self.epoch, self.position, self.draws = 0, 0, 0
        self.replay: tuple[dict, int] | None = None  # (batch, steps it still serves)

    def _fitting(self, prompts: list[PromptRecord], encoded: list[list[int]], context: int):
        """The prompts that leave room for max_new_tokens in the context (the rest skipped with a warning: a
        cut prompt would lose what the request says); an error when none does."""
        limit = context - self.settings.max_new_tokens
        keep = [i for i, ids in enumerate(encoded) if len(ids) <= limit]
        if not keep:
            raise DataError(f"no prompt fits: with max_new_tokens {self.settings.max_new_tokens} and the context of "
                            f"{context} a prompt may have {limit} tokens, the shortest has {min(map(len, encoded))}; "
                            "lower max_new_tokens or use shorter prompts")
        if len(keep) < len(encoded):
            warnings.warn(f"{len(encoded) - len(keep)} of {len(encoded)} prompts have more than {limit} tokens "
                          f"(context {context} - max_new_tokens {self.settings.max_new_tokens}) and were skipped",
                          stacklevel=3)
        return [prompts[i] for i in keep], [encoded[i] for i in keep]

    # --- the batch-source interface --------------------------------------------------------------
    def next_batch(self) -> dict[str, torch.Tensor]:
        if self.replay is not None:
            batch, left = self.replay
            self.replay = (batch, left - 1) if left > 1 else None
            return batch
        batch = self.rollout(self._next_prompts(), sampling_seed=self.seed * 1_000_003 + self.draws)
        self.draws += 1
        if self.settings.iterations > 1:
            self.replay = (batch, self.settings.iterations - 1)
        return batch

    def state_dict(self) -> dict:
        replay = None
        if self.replay is not None:
            batch, left = self.replay
            replay = {"left": left, "batch": {k: [str(v.dtype), list(v.shape), v.flatten().tolist()]
                                              for k, v in batch.items()}}
        return {"epoch": self.epoch, "position": self.position, "draws": self.draws, "seed": self.seed,
                "fingerprint": self.fingerprint, "replay": replay}

    def load_state_dict(self, state: dict) -> None:
        if state.get("fingerprint") != self.fingerprint:
            raise DataError("the RL prompts differ from the checkpoint's, so the run cannot resume exactly: use the "
                            "same prompts, or start a fresh run")
        self.epoch, self.position, self.draws = int(state["epoch"]), int(state["position"]), int(state["draws"])
        self.seed, self.replay = int(state["seed"]), None
        if state.get("replay"):
            dtypes = {"torch.int64": torch.int64, "torch.float32": torch.float32}
            batch = {k: torch.tensor(values, dtype=dtypes[dtype]).view(shape)
                     for k, (dtype, shape, values) in state["replay"]["batch"].items()}
            self.replay = (batch, int(state["replay"]["left"]))

    def _next_prompts(self) -> list[int]:
        wanted, picked = self.rows_per_step // self.settings.group_size, []
        while len(picked) < wanted:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.prompts)).tolist()
            if self.position >= len(order):
                self.epoch, self.position = self.epoch + 1, 0
                continue
            take = order[self.position:self.position + wanted - len(picked)]
            picked.extend(take)
            self.position += len(take)
        return picked

    # --- one rollout batch -----------------------------------------------------------------------
    def sample(self, indices: list[int], params: SamplingParams, group_size: int) -> list[Rollout]:
        """`group_size` completions of each prompt in `indices`, in groups, through the batched engine."""
        was = self.policy.training
        prompts = [self.prompt_ids[i] for i in indices for _ in range(group_size)]
        generator = Generator(self.policy, self.tokenizer, self.eos_ids, max_batch=len(prompts))
        try:
            completions = generator.generate(prompts, params)
        finally:
            self.policy.train(was)
        eos = self.tokenizer.eos_id if self.tokenizer.eos_id in self.eos_ids else min(self.eos_ids, default=None)
        rollouts = []
        for k, c in enumerate(completions):
            record = self.prompts[indices[k // group_size]]
            finished = c.finish_reason == "stop" and eos is not None
            rollouts.append(Rollout(record.messages, record.check, c.text, list(c.prompt_ids),
                                    list(c.token_ids) + ([eos] if finished else []), finished, params.max_new_tokens))
        return rollouts

    def rollout(self, indices: list[int], sampling_seed: int) -> dict[str, torch.Tensor]:
        s = self.settings
        params = SamplingParams(max_new_tokens=s.max_new_tokens, temperature=s.temperature, top_k=s.top_k,
                                top_p=s.top_p, seed=sampling_seed)
        start = time.perf_counter()
        rollouts = self.sample(indices, params, s.group_size)
        rate = sum(len(r.token_ids) for r in rollouts) / max(time.perf_counter() - start, 1e-9)
        batch = collate_rollouts(rollouts, self.pad_id)
        batch["rollout_tokens_per_s"] = torch.full((len(rollouts),), rate)  # per row, so micro-batches keep it
        batch["rewards"] = self.reward_fn(rollouts).float()
        batch["finished"] = torch.tensor([float(r.finished) for r in rollouts])
        with torch.no_grad():
            self.postprocess(self, batch)
        return batch


def grpo_postprocess(source: RolloutBatches, batch: dict) -> None:
    """GRPO: group-normalised advantages [rows]; the reference's token log-probs for the KL term; the sampling
    policy's when the batch serves several steps."""
    s = source.settings
    batch["advantages"] = group_advantages(batch["rewards"], s.group_size, scale=s.scale_rewards)
    ids, labels = batch["input_ids"].to(source.device), batch["labels"].to(source.device)
    if source.reference is not None:
        batch["ref_logps"] = source.reference.token_logps(ids, labels).cpu()
    if s.iterations > 1:
        batch["old_logps"] = token_logps(source.policy, ids, labels).cpu()


def collate_rollouts(rollouts: list[Rollout], pad_id: int) -> dict[str, torch.Tensor]:
    """input_ids / labels [rows, width]: prompt + completion shifted by one, labels only on completion tokens."""
    sequences = [r.prompt_ids + r.token_ids for r in rollouts]
    width = max(len(s) for s in sequences) - 1
    ids = torch.full((len(rollouts), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rollouts), width), IGNORE_INDEX, dtype=torch.long)
    for row, (r, seq) in enumerate(zip(rollouts, sequences)):
        n = len(seq) - 1
        ids[row, :n] = torch.tensor(seq[:-1])
        start = len(r.prompt_ids) - 1  # labels[t] is token t + 1: the first completion token is at prompt length - 1
        labels[row, start:n] = torch.tensor(seq[start + 1:])
    return {"input_ids": ids, "labels": labels}
