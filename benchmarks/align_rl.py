"""bench_align.py's RL sections: GRPO and PPO on the demo SFT model, and GRPO rollout speed vs TRL.

1. Quality: configs/grpo.yaml and configs/ppo.yaml as they are (rules:story, temperature 0.7, LoRA r 16, 10
   training minutes by train.max_minutes) on the demo SFT adapter (bench_finetune's cache), prompts from the bundled
   instruction set (4000 train; of the first 150 held-out prompts, those that fit, for val_reward: one greedy
   completion each, rewarded by the same rules, at steps 0, 25, 50, ... and at the end). Prompts longer than the
   demo's 256-token context minus 160 new tokens (story questions quoting a whole story) are skipped.
2. Speed: GRPO rollouts (4 prompts x group 4, <= 160 new tokens, temperature 1, a fresh LoRA r 16 on the merged
   SFT model, fp32) through slmkit's batched engine — the `rollout_tokens_per_s` that `slm rl` logs — against TRL
   GRPOTrainer's generation (transformers' generate with its KV cache, TRL's default without vLLM) on the same
   weights exported to transformers, with a PEFT adapter of the same shape and the same prompts. Completion tokens
   (EOS included, none after it) per second of generation, over the steps of alternating runs.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import bench_finetune as ft
import torch
from common import REPO

from slmkit.align.config import read_rl_config
from slmkit.align.prompt_data import load_prompts
from slmkit.align.rl_run import rl

CACHE = ft.CACHE
RL_MINUTES, EVAL_PROMPTS = 10, 150
SPEED_STEPS, SPEED_PROMPTS, SPEED_GROUP, SPEED_NEW = 4, 4, 4, 160
ROLLOUT_SPEED_GOAL = 3.0


def rl_quality(algorithm: str, sft: Path, overrides: list[str]) -> dict:
    """One `rl()` run of configs/<algorithm>.yaml on the SFT adapter; the held-out reward curve."""
    header = ft.section_header()
    sft_train, sft_held = ft.sft_files()
    out = CACHE / f"demo-{algorithm}"
    cfg = read_rl_config(REPO / "configs" / f"{algorithm}.yaml", [
        f"policy={sft}", f"data.train={sft_train}", f"data.eval={sft_held}", f"data.eval_limit={EVAL_PROMPTS}",
        f"train.out_dir={out}", "train.overwrite=true", "train.progress=false", f"train.max_minutes={RL_MINUTES}",
        *overrides])
    lines: list[str] = []
    log = ft.log_to(CACHE / "logs" / f"{algorithm}.log")
    start = time.perf_counter()
    result = rl(cfg, log=lambda *a, **k: (lines.append(" ".join(map(str, a))), log(*a)))
    wall = time.perf_counter() - start
    rows = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train"]
    curve = [(r["step"], r["val_reward"], r.get("val_finished")) for r in rows
             if r["kind"] == "eval" and "val_reward" in r]
    settings = getattr(cfg, algorithm)
    return {**header, "algorithm": algorithm, "overrides": overrides, "reward": cfg.reward, "wall_seconds": wall,
            "temperature": settings.temperature, "lr": cfg.train.lr,
            "summary": next((s for s in lines if s.startswith(algorithm.upper())), ""), "curve": curve,
            "result": {k: result.get(k) for k in ("status", "step", "train_seconds", "val_reward", "val_finished",
                                                   "val_prompts")},
            "train_reward": _window_means([r["reward"] for r in train]),
            "kl_end": train[-1].get("kl") if train else None,
            "rollout_tokens_per_s": statistics.median(r["rollout_tokens_per_s"] for r in train) if train else None,
            "plot": str((out / "curves.png").relative_to(REPO)) if (out / "curves.png").is_file() else None,
            "load_end": os.getloadavg()[0]}


def _window_means(values: list[float], windows: int = 4) -> list[float]:
    """Mean of each quarter of the run: the training reward's trend without its step-to-step noise."""
    size = max(len(values) // windows, 1)
    return [sum(values[i:i + size]) / len(values[i:i + size]) for i in range(0, size * windows, size)
            if values[i:i + size]]


# ---------------------------------------------------------------------------------------------------- speed
def speed_prompts(held: Path) -> list[list[dict]]:
    """The prompts both sides sample from (the held-out instruction prompts: short and long kinds mixed)."""
    return [p.messages for p in load_prompts(held, limit=SPEED_PROMPTS * SPEED_STEPS)]


def ours_rollout_rates(merged: Path, prompts_file: Path, run: Path) -> list[float]:
    """rollout_tokens_per_s of SPEED_STEPS GRPO steps of `slm rl` with a fresh LoRA on the merged SFT model."""
    cfg = read_rl_config(REPO / "configs" / "grpo.yaml", [
        f"policy={merged}", f"data.train={prompts_file}", "data.eval=null", f"train.out_dir={run}",
        "train.overwrite=true", "train.progress=false", f"train.max_steps={SPEED_STEPS}", "train.max_minutes=null",
        "train.time_schedule=false", f"train.batch_size={SPEED_PROMPTS * SPEED_GROUP}", f"grpo.group_size={SPEED_GROUP}",
        f"grpo.max_new_tokens={SPEED_NEW}", "grpo.temperature=1.0", "train.precision=fp32", "train.eval_every=0",
        "train.checkpoint_every=0", "train.log_every=1", "train.sample_tokens=0", "train.plots=false", "train.tensorboard=false",
        "train.warmup_steps=1", "reward=rules:finished"])
    rl(cfg, log=lambda *a, **k: None)
    rows = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["rollout_tokens_per_s"] for r in rows if r["kind"] == "train"]


def trl_rollout_rates(hf: Path, prompts: list[list[dict]], run: Path) -> list[float]:
    """Completion tokens per second of TRL GRPOTrainer's generation, step by step, on the same prompts."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    def finished(completions, completion_ids=None, **_):
        return [1.0] * len(completions)  # the reward does not matter for generation speed

    args = GRPOConfig(output_dir=str(run), per_device_train_batch_size=SPEED_PROMPTS * SPEED_GROUP,
                      num_generations=SPEED_GROUP, max_completion_length=SPEED_NEW, temperature=1.0, top_k=0,
                      top_p=1.0, beta=0.0, max_steps=SPEED_STEPS, learning_rate=5e-4, report_to=[], use_cpu=True,
                      bf16=False, save_strategy="no", logging_steps=10**6, gradient_checkpointing=False,
                      dataloader_num_workers=0, seed=0)
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32), args=args,
                          reward_funcs=finished, train_dataset=Dataset.from_list([{"prompt": p} for p in prompts]),
                          processing_class=AutoTokenizer.from_pretrained(hf), peft_config=lora)
    rates: list[float] = []
    generate = trainer._generate_single_turn

    def timed(*a, **k):  # the generation call alone: completion ids come back masked after the first EOS
        start = time.perf_counter()
        out = generate(*a, **k)
        rates.append(sum(len(ids) for ids in out[0]) / (time.perf_counter() - start))
        return out

    trainer._generate_single_turn = timed
    trainer.train()
    return rates


def rollout_speed(rounds: int) -> dict:
    import bench_align as ba

    header = ft.section_header()
    merged, hf, _ = ba.speed_inputs()
    _, held = ft.sft_files()
    prompts = speed_prompts(held)
    prompts_file = CACHE / "rl-speed-prompts.jsonl"
    prompts_file.write_text("".join(json.dumps({"messages": p}) + "\n" for p in prompts))
    ours, trl = [], []
    for r in range(rounds):
        print(f"rollout speed round {r + 1}/{rounds} ...", flush=True)
        ours += ours_rollout_rates(merged, prompts_file, CACHE / "rl-speed-ours")
        trl += trl_rollout_rates(hf, prompts, CACHE / "rl-speed-trl")
    o, t = statistics.median(ours), statistics.median(trl)
    return {**header, "rounds": rounds, "steps_timed": len(ours), "ours_tokens_per_s": o, "trl_tokens_per_s": t,
            "ratio": o / t, "load_end": os.getloadavg()[0]}


# ---------------------------------------------------------------------------------------------------- report
def plot_rl(raw: dict, path: Path) -> bool:
    """Held-out reward against step for the GRPO and PPO runs, as one PNG; False when neither has run."""
    runs = [(a.upper(), raw[a]["curve"]) for a in ("grpo", "ppo") if raw.get(a, {}).get("curve")]
    if not runs:
        return False
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, curve in runs:
        ax.plot([s for s, _, _ in curve], [v for _, v, _ in curve], marker="o", label=name)
    ax.set(xlabel="optimizer step", ylabel="held-out reward (greedy, rules:story)",
           title="RL on the demo SFT model, 10 CPU minutes")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def render_rl(raw: dict) -> list[str]:
    lines: list[str] = []
    for algorithm in ("grpo", "ppo"):
        q = raw.get(algorithm)
        if not q:
            continue
        r, curve = q["result"], q["curve"]
        first, last = curve[0][1] if curve else None, curve[-1][1] if curve else None
        lines += [f"## {algorithm.upper()} on the demo SFT model (held-out reward)", "",
                  f"{q['date']}, {q['machine'].get('cpu_model', q['machine']['processor'])}, {q['threads']} torch "
                  f"thread(s), load {q['load_start']:.2f} -> {q['load_end']:.2f}. `{q['summary']}`", "",
                  f"{algorithm.upper()} ({r['status']} at step {r['step']}, {r['train_seconds'] / 60:.1f} training "
                  f"minutes, {q['wall_seconds'] / 60:.1f} wall minutes with evaluation), reward `{q['reward']}` "
                  f"(each rule 0 or 1): held-out reward **{first:.3f} -> {last:.3f}** on {r.get('val_prompts')} prompts (greedy; "
                  f"the first {EVAL_PROMPTS} held-out ones that leave room for the completion).", "",
                  "| step | held-out reward | held-out finished |", "|---|---|---|"]
        lines += [f"| {s} | {v:.3f} | {f:.3f} |" if f is not None else f"| {s} | {v:.3f} | |" for s, v, f in curve]
        lines += ["", f"Training reward (sampled, temperature {q.get('temperature', 1.0):g}, lr {q.get('lr', 0):g}), mean "
                  "of each quarter of the run: "
                  + " -> ".join(f"{v:.3f}" for v in q["train_reward"])
                  + (f"; KL to the reference at the end {q['kl_end']:.4f}" if q.get("kl_end") is not None else "")
                  + f"; median rollout speed {q['rollout_tokens_per_s']:.0f} completion tokens/s.", ""]
        if q.get("plot"):
            lines += [f"Training curves (loss, learning rate, reward and KL): `{q['plot']}` (in the run directory, "
                      "not committed); the held-out curves: `align_rl.png` beside this file.", ""]
    s = raw.get("rollouts")
    if s:
        lines += ["## GRPO rollout speed vs TRL", "",
                  f"{s['date']}, {s['machine'].get('cpu_model', s['machine']['processor'])}, {s['threads']} torch "
                  f"thread(s), load {s['load_start']:.2f} -> {s['load_end']:.2f}; {s['rounds']} alternating rounds, "
                  f"{s['steps_timed']} rollout batches per side ({SPEED_PROMPTS} prompts x {SPEED_GROUP}, <= "
                  f"{SPEED_NEW} new tokens, temperature 1, fresh LoRA r 16 on the merged SFT model, fp32).", "",
                  "| | completion tokens/s (median) |", "|---|---|",
                  f"| slmkit rl (batched engine: KV cache, rows leave when finished) | {s['ours_tokens_per_s']:.0f} |",
                  f"| TRL GRPOTrainer (transformers generate) + PEFT | {s['trl_tokens_per_s']:.0f} |", "",
                  f"slmkit's rollouts are **{s['ratio']:.2f}x** TRL's speed (goal >= {ROLLOUT_SPEED_GOAL}x).", ""]
    return lines
