"""`rl(cfg)`: GRPO of a policy on prompts with rule or reward-model rewards, on the one Trainer; what `slm rl` runs.

    from slmkit.align.config import read_rl_config
    from slmkit.align.rl_run import rl
    result = rl(read_rl_config("configs/grpo.yaml", ["policy=runs/demo-sft", "reward=rules:story"]))

The policy is prepared as for DPO (a model directory with a fresh adapter or every weight training, or an SFT
adapter that trains on). Each optimizer step draws a rollout batch (rollouts.py: group_size completions per
prompt through the batched engine, rewarded, advantages normalised within each group) and applies the GRPO loss
(grpo_objective.py). With grpo.beta > 0 a reference (adapters off, or a frozen copy) scores the sampled tokens
for the k3 KL term. Evaluation: the mean reward of one greedy completion per held-out prompt. Under torchrun
every rank draws the whole rollout batch (identical: same weights, same seeds) and trains on its share.
"""

from __future__ import annotations

from pathlib import Path

from slmkit.align.config import RLConfig
from slmkit.align.grpo_objective import GRPOObjective
from slmkit.align.prompt_data import load_prompts
from slmkit.align.reference import Reference
from slmkit.align.rollouts import RolloutBatches
from slmkit.align.rule_rewards import make_reward
from slmkit.align.run import prepare_policy
from slmkit.errors import ConfigError
from slmkit.finetune.lora import lora_layers
from slmkit.finetune.run import chat_sample_prompts
from slmkit.train.distributed import setup_distributed
from slmkit.train.trainer import Trainer


def rl(cfg: RLConfig, log=print) -> dict:
    t, g = cfg.train, cfg.grpo
    dist, device = setup_distributed(t)
    log = log if dist.is_main else (lambda *a, **k: None)
    try:
        if dist.enabled and t.parallel == "fsdp":
            raise ConfigError("train.parallel=fsdp is not supported for RL yet: use train.parallel=ddp")
        asked = "none" if g.reference == "auto" and g.beta == 0 else g.reference
        if asked == "none" and g.beta > 0:
            raise ConfigError("grpo.beta > 0 needs a reference for its KL term: set grpo.reference to auto, "
                              "adapters_off or copy (or grpo.beta=0)")
        model, tokenizer, weights, frozen, mode = prepare_policy(cfg, asked, allow_precomputed=False)
        prompts = load_prompts(cfg.data.train, limit=cfg.data.limit)
        held = load_prompts(cfg.data.eval, limit=cfg.data.eval_limit) if cfg.data.eval else []
        model.to(device)
        if frozen is not None:
            frozen.to(device)
        reference = Reference(mode, model, frozen) if mode != "none" else None
        pad = tokenizer.eos_id if tokenizer.eos_id is not None else 0
        reward_fn = make_reward(cfg.reward, pad, device)
        rows = t.batch_size * t.grad_accum * dist.world_size
        train_data = RolloutBatches(model, tokenizer, prompts, reward_fn, g, rows, seed=t.seed, reference=reference,
                                    device=device)
        objective = GRPOObjective(g)
        eval_fn = None
        if held:
            held_out = RolloutBatches(model, tokenizer, held, reward_fn, g, g.group_size, seed=t.seed, device=device)
            eval_fn = lambda m, ctx: objective.evaluate(held_out, device, dist)  # noqa: E731
        run_dir = Path(t.out_dir)
        tok_dir = run_dir / "tokenizer"
        if dist.is_main:
            tokenizer.save(tok_dir)
        dist.barrier()
        t.sample_prompts = chat_sample_prompts(tokenizer, t.sample_prompts)
        n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
        log(f"GRPO (group {g.group_size}, {rows // g.group_size} prompts per step, beta {g.beta}, reference {mode}, "
            f"reward {cfg.reward}) of {cfg.policy}: {len(prompts)} prompts ({len(held)} held out), {n_train:,} "
            "trainable parameters" + (f", {len(list(lora_layers(model)))} LoRA layers" if weights else ""))
        trainer = Trainer(cfg, model, train_data, None, tokenizer=tokenizer, tokenizer_dir=tok_dir, loss_fn=objective,
                          dist=dist, device=device, log=log, weights=weights, eval_fn=eval_fn)
        return trainer.fit()
    finally:
        dist.close()
