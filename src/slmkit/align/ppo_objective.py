"""PPO as the one Trainer's objective: a value head on the policy's trunk, rollouts post-processed into per-token
advantages (KL-penalised rewards + GAE), and the clipped policy and value losses.

    add_value_head(policy)                                   # policy.value_head: Linear(d_model, 1), zeros
    source = RolloutBatches(..., settings=ppo, postprocess=ppo_postprocess)
    trainer = Trainer(cfg, policy, source, loss_fn=PPOObjective(ppo), weights=ValueHeadWeights(weights))

Each rollout batch records, with the sampling policy and no gradient: old_logps and old_values per completion token,
the reference's log-probs, token rewards (ppo_loss.kl_penalised_rewards: the per-token KL penalty plus the score on
the last token), GAE advantages (whitened over the batch) and returns. The loss per completion token is GRPO's
clipped policy loss with those advantages plus vf_coef x the clipped value loss; the Trainer divides by the
completion tokens of the step. `ppo.iterations` (PPO epochs) replays a rollout batch for that many steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from slmkit.align.completion_logps import logps_from_hidden
from slmkit.align.grpo_loss import grpo_token_loss
from slmkit.align.grpo_objective import rollout_speed
from slmkit.align.ppo_loss import clipped_value_loss, gae, kl_penalised_rewards, whiten
from slmkit.errors import CheckpointError
from slmkit.fileio import atomic_file
from slmkit.model.checkpoint import read_weights
from slmkit.model.loss import IGNORE_INDEX
from slmkit.train.distributed import unwrap

VALUE_HEAD_FILE = "value_head.safetensors"


@dataclass
class PPOSettings:
    group_size: int = 1  # completions per prompt
    max_new_tokens: int = 128
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    iterations: int = 2  # PPO epochs: optimizer steps per rollout batch
    epsilon: float = 0.2  # policy ratio clip
    value_clip: float = 0.2
    vf_coef: float = 0.1
    kl_coef: float = 0.05  # per-token KL penalty in the rewards
    gamma: float = 1.0
    lam: float = 0.95
    whiten_advantages: bool = True
    reference: str = "auto"  # auto | adapters_off | copy

    def __post_init__(self) -> None:
        if self.group_size < 1 or self.iterations < 1 or self.max_new_tokens < 1:
            raise ValueError("ppo.group_size, ppo.iterations and ppo.max_new_tokens must be at least 1")
        if not 0 < self.epsilon < 1 or self.value_clip <= 0 or self.vf_coef < 0 or self.kl_coef < 0:
            raise ValueError("ppo.epsilon must be in (0, 1), value_clip > 0, vf_coef and kl_coef >= 0")
        if not (0 <= self.gamma <= 1 and 0 <= self.lam <= 1):
            raise ValueError("ppo.gamma and ppo.lam must be in [0, 1]")
        if self.reference not in ("auto", "adapters_off", "copy"):
            raise ValueError(f"ppo.reference must be auto, adapters_off or copy, got {self.reference!r}")


def add_value_head(policy: torch.nn.Module) -> None:
    """A zero-initialised scalar head on the final hidden states (values start at 0), trained in full."""
    weight = policy.embed.weight
    policy.value_head = torch.nn.Linear(policy.config.d_model, 1, bias=False, device=weight.device, dtype=torch.float32)
    torch.nn.init.zeros_(policy.value_head.weight)


def logps_and_values(model, ids: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(token log-probs, values) [rows, width] float32, 0 off the completion, from one forward of the trunk."""
    hidden = model(ids, hidden_only=True).hidden
    head = unwrap(model).value_head
    values = head(hidden.to(head.weight.dtype)).squeeze(-1).float() * (labels != IGNORE_INDEX)
    logps = logps_from_hidden(model, hidden, labels)
    return logps, values


def ppo_postprocess(source, batch: dict) -> None:
    """Old log-probs and values, KL-penalised token rewards, GAE advantages and returns for a rollout batch."""
    s = source.settings
    ids, labels = batch["input_ids"].to(source.device), batch["labels"].to(source.device)
    mask = labels != IGNORE_INDEX
    was = source.policy.training
    source.policy.eval()
    try:
        old_logps, old_values = logps_and_values(source.policy, ids, labels)
    finally:
        source.policy.train(was)
    ref_logps = source.reference.token_logps(ids, labels)
    rewards = kl_penalised_rewards(batch["rewards"].to(source.device), old_logps, ref_logps, mask, s.kl_coef)
    advantages, returns = gae(rewards, old_values, mask, s.gamma, s.lam)
    if s.whiten_advantages:
        advantages = whiten(advantages, mask)
    for key, value in (("old_logps", old_logps), ("old_values", old_values), ("ref_logps", ref_logps),
                       ("advantages", advantages), ("returns", returns)):
        batch[key] = value.cpu()


class PPOObjective:
    def __init__(self, settings: PPOSettings):
        self.settings = settings

    def __call__(self, model, batch: dict):
        s = self.settings
        mask = batch["labels"] != IGNORE_INDEX
        logps, values = logps_and_values(model, batch["input_ids"], batch["labels"])
        policy, stats = grpo_token_loss(logps, batch["old_logps"], batch["advantages"], mask, s.epsilon, s.epsilon)
        value = clipped_value_loss(values, batch["old_values"], batch["returns"], mask, s.value_clip)
        n = mask.sum().clamp(min=1)
        kl = ((batch["old_logps"] - batch["ref_logps"]) * mask).sum() / n
        metrics = {"reward": float(batch["rewards"].mean()), "kl": float(kl), "value_loss": float(value.detach().sum() / n),
                   "clip_ratio": float(stats["clip_ratio"].detach()), "completion_tokens": float(mask.sum(-1).float().mean()),
                   "finished": float(batch["finished"].mean()), **rollout_speed(batch)}
        return (policy + s.vf_coef * value).sum(), metrics


class ValueHeadWeights:
    """Wraps the policy's weights object (adapter or full): the value head goes to its own file, so the run
    directory still loads as the adapter / model it is, and checkpoints resume with the head."""

    def __init__(self, inner):
        self.inner = inner
        self.files = (*inner.files, VALUE_HEAD_FILE)
        self.strict = inner.strict

    def select(self, state: dict) -> dict:
        heads = {k: v for k, v in state.items() if k.endswith("value_head.weight")}
        return {**self.inner.select(state), **heads}

    def write(self, directory: Path, state: dict, model_config, tokenizer_dir) -> None:
        head = [v for k, v in state.items() if k.endswith("value_head.weight")]
        if len(head) != 1:
            raise CheckpointError("the PPO policy's state has no value_head.weight")
        self.inner.write(directory, {k: v for k, v in state.items() if not k.endswith("value_head.weight")},
                         model_config, tokenizer_dir)
        with atomic_file(Path(directory) / VALUE_HEAD_FILE) as tmp:
            save_file({"value_head.weight": head[0].detach().cpu().float().contiguous()}, str(tmp))

    def read(self, directory: Path, model_config) -> dict:
        return {**self.inner.read(directory, model_config), **read_weights(directory, VALUE_HEAD_FILE)}
