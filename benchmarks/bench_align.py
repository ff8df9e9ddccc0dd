"""Alignment benchmark: DPO on the demo SFT model (preference accuracy, request accuracy), DPO step speed vs TRL,
GRPO and PPO on the demo SFT model (held-out reward), GRPO rollout speed vs TRL (the last three: align_rl.py).

    .venv/bin/python benchmarks/bench_align.py                 # every section (~70 min on 2 cores, first run)
    .venv/bin/python benchmarks/bench_align.py --quality       # or --speed, --grpo, --ppo, --rollouts

1. Quality: the demo base and its LoRA chat SFT (bench_finetune's cache: benchmarks/.cache/demo, demo-sft; made
   when missing), the bundled preference pairs (`slm data preferences-synthetic`: 2000 train, 200 held out), then
   `align()` with configs/dpo-lora.yaml (the SFT adapter trains on; reference a frozen copy of it). Held-out
   preference accuracy is the share of held-out pairs whose implicit reward beta * (log pi - log pi_ref) is higher
   for chosen (a tie counts 1/2; at step 0 every reward is 0, so 0.5), per flaw. The request accuracy is
   bench_finetune's code-checked held-out instruction accuracy, before (the SFT model) and after (the DPO model).
2. Speed: one fresh LoRA (r 16, all-linear) DPO step on the merged SFT model, 8 pairs of <= 257 tokens, fp32, one
   torch thread, reference = adapters off in both: slmkit's `align()` against TRL's DPOTrainer with a PEFT
   adapter on the same weights (exported to transformers) and the same pairs. Median step time of steps 3-12,
   alternating runs.

3-5. See align_rl.py.

Raw numbers: benchmarks/results/align.json; the report: benchmarks/results/align.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import align_rl  # noqa: E402
import bench_finetune as ft  # noqa: E402
from common import REPO, RESULTS  # noqa: E402

from slmkit.align.config import read_align_config  # noqa: E402
from slmkit.align.dpo_objective import DPOObjective, DPOSettings  # noqa: E402
from slmkit.align.preference_batches import PreferenceEvalBatches, tokenize_pairs  # noqa: E402
from slmkit.align.preference_data import load_preference_pairs  # noqa: E402
from slmkit.align.reference import Reference  # noqa: E402
from slmkit.align.run import align  # noqa: E402
from slmkit.data.sources.preference_pairs import FLAWS, write_preference_files  # noqa: E402
from slmkit.finetune.adapter import load_adapted_model  # noqa: E402
from slmkit.finetune.loading import load_for_use  # noqa: E402
from slmkit.interop.hf_export import export_hf  # noqa: E402
from slmkit.train.precision import cpu_has_native_bf16  # noqa: E402

CACHE, RAW = ft.CACHE, RESULTS / "align.json"
ACCURACY_GOAL, SPEED_GOAL = 0.8, 1.5
SPEED_STEPS, SPEED_PAIRS, SPEED_SEQ = 12, 8, 256


def inputs() -> tuple[Path, Path, Path, Path]:
    """(SFT adapter run, prefs train, prefs held-out, SFT held-out examples): made when missing."""
    base = ft.demo_base()
    sft_train, sft_held = ft.sft_files()
    sft = CACHE / "demo-sft"
    if not (sft / "adapter.json").is_file():
        print(f"fine-tuning the demo into {sft} (configs/sft-lora.yaml, 5 min) ...", flush=True)
        ft.run_finetune(base, sft_train, sft_held, sft, [])
    prefs, held = CACHE / "prefs" / "prefs.jsonl", CACHE / "prefs" / "prefs.heldout.jsonl"
    if not held.is_file():
        write_preference_files(prefs, pairs=2000, heldout=200, seed=0)
    return sft, prefs, held, sft_held


def rewards_by_flaw(policy_dir: Path, reference_dir: Path, held: Path, beta: float) -> dict:
    """Held-out preference accuracy (ties 1/2) per flaw and over all, of a DPO run against its reference."""
    policy, tok, _ = load_for_use(policy_dir, merge=True)
    reference, _, _ = load_for_use(reference_dir, merge=True)
    pairs = load_preference_pairs(held)
    records = ft.read_jsonl(held)
    batches = PreferenceEvalBatches(tokenize_pairs(tok, pairs, 256), 8, pad_id=tok.eos_id, rank=0, world_size=1)
    objective = DPOObjective(DPOSettings(beta=beta), Reference("copy", policy, reference))
    wins: dict[str, list[float]] = {}
    with torch.no_grad():
        for batch in batches:
            out, _, _ = objective.losses(policy, batch)
            c, r = out.chosen_rewards, out.rejected_rewards
            for i, win in zip(batch["pair_index"].tolist(), ((c > r).float() + 0.5 * (c == r).float()).tolist()):
                for key in (records[i]["flaw"], "all"):
                    wins.setdefault(key, []).append(win)
    return {k: {"n": len(v), "accuracy": sum(v) / len(v)} for k, v in wins.items()}


def quality(heldout: int, overrides: list[str]) -> dict:
    header = ft.section_header()
    sft, prefs, held, sft_held = inputs()
    examples = ft.read_jsonl(sft_held)[:heldout]
    before = ft.accuracy(examples, ft.answer_all(*load_for_use(sft), examples))
    out = CACHE / "demo-dpo"
    cfg = read_align_config(REPO / "configs" / "dpo-lora.yaml", [
        f"policy={sft}", f"data.train={prefs}", f"data.eval={held}", f"train.out_dir={out}", "train.overwrite=true",
        "train.progress=false", *overrides])
    lines: list[str] = []
    log = ft.log_to(CACHE / "logs" / "align.log")
    start = time.perf_counter()
    result = align(cfg, log=lambda *a, **k: (lines.append(" ".join(map(str, a))), log(*a)))
    wall = time.perf_counter() - start
    evals = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    curve = [(r["step"], r["val_accuracy"], r["val_margin"]) for r in evals if r["kind"] == "eval" and "val_accuracy" in r]
    after = ft.accuracy(examples, ft.answer_all(*load_for_use(out), examples))
    return {**header, "overrides": overrides, "train_pairs": 2000, "heldout_pairs": 200, "native_bf16": cpu_has_native_bf16(),
            "dpo": {k: result.get(k) for k in ("status", "step", "train_seconds", "val_loss", "val_accuracy",
                                               "val_margin")},
            "wall_seconds": wall, "summary": next((s for s in lines if s.startswith("DPO")), ""), "curve": curve,
            "by_flaw": rewards_by_flaw(out, sft, held, cfg.dpo.beta), "requests_before": before,
            "requests_after": after, "heldout_examples": len(examples), "load_end": os.getloadavg()[0]}


# ---------------------------------------------------------------------------------------------------- speed
def speed_inputs() -> tuple[Path, Path, Path]:
    """(merged SFT model dir, its transformers export, 96 preference pairs as JSONL)."""
    sft, prefs, _, _ = inputs()
    merged, hf = CACHE / "sft-merged", CACHE / "sft-merged-hf"
    if not (hf / "config.json").is_file():
        model, tok, _ = load_adapted_model(sft, merge=True)
        model.save_pretrained(merged, tokenizer_dir=sft)
        export_hf(model, hf, tokenizer_dir=sft)
    return merged, hf, prefs


def ours_step_seconds(merged: Path, prefs: Path, run: Path, reference: str = "auto") -> list[float]:
    cfg = read_align_config(REPO / "configs" / "dpo-lora.yaml", [
        f"policy={merged}", f"data.train={prefs}", "data.eval=null", "data.eval_fraction=0", "data.limit=96",
        f"train.out_dir={run}", "train.overwrite=true", "train.progress=false", f"train.max_steps={SPEED_STEPS}",
        "train.max_minutes=null", "train.time_schedule=false", f"train.batch_size={SPEED_PAIRS}",
        f"train.seq_len={SPEED_SEQ}", "train.precision=fp32", "train.eval_every=0", "train.checkpoint_every=0",
        "train.log_every=1", "train.sample_tokens=0", "train.plots=false", "train.tensorboard=false",
        f"dpo.reference={reference}"])
    align(cfg, log=lambda *a, **k: None)
    rows = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]
    times = [r["time"] for r in rows if r["kind"] == "train"]
    return [b - a for a, b in zip(times[2:], times[3:])]


def trl_step_seconds(hf: Path, prefs: Path, run: Path) -> list[float]:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    stamps: list[float] = []

    class Stamp(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            stamps.append(time.perf_counter())

    records = [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in ft.read_jsonl(prefs)[:96]]
    args = DPOConfig(output_dir=str(run), per_device_train_batch_size=SPEED_PAIRS, max_steps=SPEED_STEPS,
                     learning_rate=5e-4, beta=0.1, max_length=SPEED_SEQ + 1, report_to=[], use_cpu=True, bf16=False,
                     save_strategy="no", logging_steps=10**6, gradient_checkpointing=False, dataloader_num_workers=0)
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32), args=args,
                         train_dataset=Dataset.from_list(records), processing_class=AutoTokenizer.from_pretrained(hf),
                         peft_config=lora, callbacks=[Stamp()])
    trainer.train()
    return [b - a for a, b in zip(stamps[2:], stamps[3:])]


def speed(rounds: int) -> dict:
    header = ft.section_header()
    merged, hf, prefs = speed_inputs()
    ours, pre, trl = [], [], []
    for r in range(rounds):
        print(f"speed round {r + 1}/{rounds} ...", flush=True)
        ours += ours_step_seconds(merged, prefs, CACHE / "speed-ours")
        trl += trl_step_seconds(hf, prefs, CACHE / "speed-trl")
        pre += ours_step_seconds(merged, prefs, CACHE / "speed-ours-pre", reference="precomputed")
    o, t, p = statistics.median(ours), statistics.median(trl), statistics.median(pre)
    return {**header, "rounds": rounds, "steps_timed": len(ours), "ours_step_s": o, "trl_step_s": t,
            "ratio": t / o, "precomputed_step_s": p, "precomputed_ratio": t / p, "load_end": os.getloadavg()[0]}


# ---------------------------------------------------------------------------------------------------- report
def precision_note(native: bool) -> str:
    return f"{'native' if native else 'no native'} bf16: the recipes' precision auto ran {'bf16' if native else 'fp32'}"


def render(raw: dict) -> str:
    lines = ["# Alignment benchmark", ""]
    q = raw.get("quality")
    if q:
        d = q["dpo"]
        lines += ["## DPO on the demo SFT model (held-out preference accuracy)", "",
                  f"{q['date']}, {q['machine'].get('cpu_model', q['machine']['processor'])} "
                  f"({precision_note(q['native_bf16'])}), "
                  f"{q['threads']} torch thread(s), load {q['load_start']:.2f}"
                  f" -> {q['load_end']:.2f}. `{q['summary']}`", "",
                  f"DPO ({d['status']} at step {d['step']}, {d['train_seconds'] / 60:.1f} training minutes): "
                  f"held-out accuracy **0.500 -> {d['val_accuracy']:.3f}** (goal >= {ACCURACY_GOAL}), "
                  f"margin {d['val_margin']:.3f}, DPO loss {d['val_loss']:.4f}.", "",
                  "| flaw in rejected | pairs | accuracy after DPO |", "|---|---|---|"]
        for flaw in (*FLAWS, "all"):
            row = q["by_flaw"].get(flaw)
            if row:
                lines.append(f"| {flaw} | {row['n']} | {row['accuracy']:.3f} |")
        lines += ["", "Accuracy over training (step, held-out accuracy, margin): "
                  + ", ".join(f"({s}, {a:.3f}, {m:.2f})" for s, a, m in q["curve"]), "",
                  f"Code-checked request accuracy on {q['heldout_examples']} held-out instruction examples "
                  "(bench_finetune's checks), SFT model -> DPO model:", "", "| kind | SFT | after DPO |", "|---|---|---|"]
        for kind, row in q["requests_before"].items():
            lines.append(f"| {kind} | {row['accuracy']:.3f} | {q['requests_after'][kind]['accuracy']:.3f} |")
        lines.append("")
    s = raw.get("speed")
    if s:
        lines += ["## DPO step speed vs TRL", "",
                  f"{s['date']}, {s['machine'].get('cpu_model', s['machine']['processor'])}, {s['threads']} torch "
                  f"thread(s), load {s['load_start']:.2f} -> {s['load_end']:.2f}; "
                  f"{s['rounds']} alternating rounds, {s['steps_timed']} steps timed per side.", "",
                  "| | median step (s) |", "|---|---|", f"| slmkit align | {s['ours_step_s']:.3f} |",
                  f"| TRL DPOTrainer + PEFT | {s['trl_step_s']:.3f} |"]
        if "precomputed_step_s" in s:
            lines.append(f"| slmkit align, dpo.reference=precomputed (one reference pass over the pairs first, not timed) | "
                         f"{s['precomputed_step_s']:.3f} |")
        lines += ["", f"slmkit is **{s['ratio']:.2f}x** TRL's speed with the same live reference (goal >= {SPEED_GOAL}x)"
                  + (f"; with the reference precomputed once, {s['precomputed_ratio']:.2f}x." if "precomputed_ratio" in s
                     else "."), ""]
    return "\n".join(lines + align_rl.render_rl(raw))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quality", action="store_true")
    parser.add_argument("--speed", action="store_true")
    parser.add_argument("--grpo", action="store_true", help="GRPO on the demo SFT model (10 training minutes)")
    parser.add_argument("--ppo", action="store_true", help="PPO on the demo SFT model (10 training minutes)")
    parser.add_argument("--rollouts", action="store_true", help="GRPO rollout speed vs TRL's GRPOTrainer")
    parser.add_argument("--heldout", type=int, default=60, help="held-out instruction examples to answer (of 200)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an override of configs/dpo-lora.yaml for the quality run (repeatable)")
    args = parser.parse_args()
    everything = not (args.quality or args.speed or args.grpo or args.ppo or args.rollouts)
    torch.set_num_threads(ft.THREADS)
    raw = json.loads(RAW.read_text()) if RAW.is_file() else {}
    if args.quality or everything:
        raw["quality"] = quality(args.heldout, args.set)
        _save(raw)
    if args.speed or everything:
        raw["speed"] = speed(args.rounds)
        _save(raw)
    for algorithm in ("grpo", "ppo"):
        if getattr(args, algorithm) or everything:
            raw[algorithm] = align_rl.rl_quality(algorithm, inputs()[0], [])
            _save(raw)
    if args.rollouts or everything:
        raw["rollouts"] = align_rl.rollout_speed(args.rounds)
        _save(raw)
    print((RESULTS / "align.md").read_text())


def _save(raw: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    RAW.write_text(json.dumps(raw, indent=1))
    (RESULTS / "align.md").write_text(render(raw))
    align_rl.plot_rl(raw, RESULTS / "align_rl.png")


if __name__ == "__main__":
    main()
