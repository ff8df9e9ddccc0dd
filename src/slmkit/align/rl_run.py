"""`rl(cfg)`: GRPO or PPO of a policy on prompts with rule or reward-model rewards, on the one Trainer; `slm rl`.

    from slmkit.align.config import read_rl_config
    from slmkit.align.rl_run import rl
    result = rl(read_rl_config("configs/grpo.yaml", ["policy=runs/demo-sft", "reward=rules:story"]))

The policy is prepared as for DPO (a model directory with a fresh adapter or every weight training, or an SFT
adapter that trains on). Each optimizer step draws a rollout batch (rollouts.py: group_size completions per
prompt through the batched engine, rewarded, advantages normalised within each group) and applies the GRPO loss
(grpo_objective.py). With grpo.beta > 0 a reference (adapters off, or a frozen copy) scores the sampled tokens
for the k3 KL term. `algorithm: ppo` adds a value head to the policy and post-processes each rollout batch into
per-token advantages (ppo_objective.py). Evaluation: the mean reward of one greedy completion per held-out prompt.
Under torchrun
every rank draws the whole rollout batch (identical: same weights, same seeds) and trains on its share.
"""

from __future__ import annotations

from pathlib import Path

from slmkit.align.config import RLConfig
from slmkit.align.grpo_objective import GRPOObjective, held_out_reward
from slmkit.align.ppo_objective import PPOObjective, ValueHeadWeights, add_value_head, ppo_postprocess
from slmkit.align.prompt_data import load_prompts
from slmkit.align.reference import Reference
from slmkit.align.rollouts import RolloutBatches, grpo_postprocess
from slmkit.align.rule_rewards import make_reward
from slmkit.align.run import save_run_tokenizer, prepare_policy
from slmkit.errors import ConfigError
from slmkit.finetune.lora import lora_layers
from slmkit.finetune.run import chat_sample_prompts
from slmkit.train.distributed import training_session
from slmkit.train.trainer import Trainer
from slmkit.train.weights import FullWeights


def reference_choice(cfg: RLConfig) -> str:
    """The reference asked for: GRPO without a KL term needs none; PPO's KL penalty always needs one."""
    if cfg.algorithm == "ppo":
        return cfg.ppo.reference
    g = cfg.grpo
    if g.reference == "none" and g.beta > 0:
        raise ConfigError("grpo.beta > 0 needs a reference for its KL term: set grpo.reference to auto, "
                          "adapters_off or copy (or grpo.beta=0)")
    return "none" if g.reference == "auto" and g.beta == 0 else g.reference


def algorithm_parts(cfg: RLConfig, model, weights):
    """(settings, rollout postprocess, loss objective, Trainer weights) for cfg.algorithm."""
    if cfg.algorithm == "ppo":
        add_value_head(model)
        return cfg.ppo, ppo_postprocess, PPOObjective(cfg.ppo), ValueHeadWeights(weights or FullWeights())
    return cfg.grpo, grpo_postprocess, GRPOObjective(cfg.grpo), weights


def rl(cfg: RLConfig, log=print) -> dict:
    t = cfg.train
    no_fsdp = "train.parallel=fsdp is not supported for RL yet: use train.parallel=ddp"
    with training_session(t, log, no_fsdp) as (dist, device, log):
        model, tokenizer, weights, frozen, mode = prepare_policy(cfg, reference_choice(cfg), allow_precomputed=False)
        n_lora = len(list(lora_layers(model)))
        settings, postprocess, objective, weights = algorithm_parts(cfg, model, weights)
        prompts = load_prompts(cfg.data.train, limit=cfg.data.limit)
        held = load_prompts(cfg.data.eval, limit=cfg.data.eval_limit) if cfg.data.eval else []
        model.to(device)
        if frozen is not None:
            frozen.to(device)
        reference = Reference(mode, model, frozen) if mode != "none" else None
        reward_fn = make_reward(cfg.reward, device)
        rows = t.batch_size * t.grad_accum * dist.world_size
        train_data = RolloutBatches(model, tokenizer, prompts, reward_fn, settings, rows, seed=t.seed,
                                    reference=reference, device=device, postprocess=postprocess)
        eval_fn = None
        if held:
            held_out = RolloutBatches(model, tokenizer, held, reward_fn, settings, settings.group_size, seed=t.seed,
                                      device=device)
            eval_fn = lambda m, ctx: held_out_reward(held_out, settings.max_new_tokens, device, dist)  # noqa: E731
        tok_dir = save_run_tokenizer(tokenizer, Path(t.out_dir), dist)
        t.sample_prompts = chat_sample_prompts(tokenizer, t.sample_prompts)
        n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
        log(f"{cfg.algorithm.upper()} ({settings.group_size} completion(s) per prompt, {rows // settings.group_size} "
            f"prompts per step, reference {mode}, reward {cfg.reward}) of {cfg.policy}: {len(train_data.prompts)} prompts "
            f"({len(held_out.prompts) if held else 0} held out), {n_train:,} trainable parameters"
            + (f", {n_lora} LoRA layers" if n_lora else ""))
        trainer = Trainer(cfg, model, train_data, None, tokenizer=tokenizer, tokenizer_dir=tok_dir, loss_fn=objective,
                          dist=dist, device=device, log=log, weights=weights, eval_fn=eval_fn)
        return trainer.fit()
