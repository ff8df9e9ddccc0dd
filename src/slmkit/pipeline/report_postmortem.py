"""The report's post-mortem, generated from the run: what went wrong or slowly, what each stage
bought, and what to change next time. Each finding is a rule over the files the stages wrote."""

from __future__ import annotations

from pathlib import Path

from slmkit.eval.evaluation_run import EvalResults
from slmkit.pipeline.report_outcomes import metric
from slmkit.pipeline.report_training import TRAINING_STAGES, read_metrics
from slmkit.pipeline.state import PipelineState

SPIKE_FACTOR = 1.5  # a training loss this many times the best so far (after warm-up) counts as a spike
FORGETTING = 1.25  # SFT raising the plain-text bits per byte by a quarter counts as forgetting
STILL_IMPROVING = 0.02  # held-out metric still moving by 2% between the last two evaluations: not converged


def postmortem(root: Path, state: PipelineState, results: EvalResults | None) -> list[tuple]:
    findings, advice = _process_findings(state), []
    for name, title in TRAINING_STAGES.items():
        f, a = _training_findings(root, name, title)
        findings += f
        advice += a
    if results is not None:
        f, a = _result_findings(results)
        findings += f
        advice += a
    return [("h2", "Post-mortem"), ("ul", findings or ["nothing unusual happened"]),
            ("h3", "What to change next time"), ("ul", advice or ["nothing the run's own numbers point at"])]


def _process_findings(state: PipelineState) -> list[str]:
    ran = {n: r for n, r in state.stages.items() if r.seconds}
    findings = []
    if ran:
        total = sum(r.seconds for r in ran.values())
        slowest = max(ran, key=lambda n: ran[n].seconds)
        findings.append(f"slowest stage: **{slowest}**, {ran[slowest].seconds:.0f} s of {total:.0f} s "
                        f"({ran[slowest].seconds / total:.0%})")
    for name, record in state.stages.items():
        if record.attempts > 1:
            findings.append(f"{name} was interrupted (or failed) and resumed from its checkpoint: {record.attempts} attempts")
    return findings


def _training_findings(root: Path, name: str, title: str) -> tuple[list[str], list[str]]:
    m = read_metrics(root / name)
    findings, advice = [], []
    if not m.train:
        return findings, advice
    skipped = m.last_train.get("skipped_total", 0)
    if skipped:
        findings.append(f"{title}: {skipped} step(s) skipped for a non-finite loss or gradient")
        advice.append(f"{title}: lower the learning rate or use bf16 instead of fp16 (skipped steps)")
    best = float("inf")
    for record in m.train[max(1, len(m.train) // 10):]:
        if record["loss"] > SPIKE_FACTOR * best:
            findings.append(f"{title}: the loss spiked to {record['loss']:.3f} at step {record['step']} "
                            f"(best so far {best:.3f})")
            advice.append(f"{title}: a lower peak learning rate or longer warm-up (loss spike)")
            break
        best = min(best, record["loss"])
    accuracy = [r["val_accuracy"] for r in m.evals if "val_accuracy" in r]
    if len(accuracy) >= 2:
        findings.append(f"{title}: held-out preference accuracy {accuracy[0]:.3f} -> {accuracy[-1]:.3f}")
    key = {"pretrain": "val_bpb", "sft": "val_loss"}.get(name)
    points = [r[key] for r in m.evals if key and key in r]
    if len(points) >= 2 and points[-2] > 0 and (points[-2] - points[-1]) / points[-2] > STILL_IMPROVING:
        findings.append(f"{title}: the held-out {key.replace('val_', '')} was still falling at the end "
                        f"({points[-2]:.4f} -> {points[-1]:.4f})")
        advice.append(f"{title}: train longer (train.max_steps / train.max_minutes): it had not converged")
    return findings, advice


def _result_findings(results: EvalResults) -> tuple[list[str], list[str]]:
    findings, advice = [], []
    ngram = next((v for k, v in results.baselines.items() if k.startswith("kneser-ney")), {})
    ngram_bpb = metric(ngram, "text", "bits_per_byte")
    per_model = {m["name"]: results.results.get(m["name"], {}) for m in results.models}
    if ngram_bpb is not None:
        beaten = [n for n, r in per_model.items() if (metric(r, "text", "bits_per_byte") or 1e9) < ngram_bpb]
        behind = [n for n in per_model if n not in beaten]
        findings.append(f"models under the n-gram baseline's {ngram_bpb:.4f} bits per byte: "
                        f"{', '.join(beaten) or 'none'}" + (f"; not: {', '.join(behind)}" if behind else ""))
        if "base" in behind:
            advice.append("pretraining: the model does not beat a Kneser-Ney n-gram on its own data; more tokens, "
                          "steps or a larger model")
    for before, after, stage in (("base", "sft", "SFT"), ("sft", "dpo", "DPO")):
        a, b = (metric(per_model.get(n, {}), "story_requests", "accuracy") for n in (before, after))
        if a is not None and b is not None:
            findings.append(f"{stage}: story-request accuracy {a:.3f} -> {b:.3f}")
            if b <= a:
                advice.append(f"{stage}: no gain on the checked requests; more steps or data for {stage}")
    base_bpb, sft_bpb = (metric(per_model.get(n, {}), "text", "bits_per_byte") for n in ("base", "sft"))
    if base_bpb and sft_bpb and sft_bpb > FORGETTING * base_bpb:
        findings.append(f"SFT raised the bits per byte on plain text {base_bpb:.4f} -> {sft_bpb:.4f}: the chat model "
                        "forgot part of the pretraining distribution")
        advice.append("SFT: a lower learning rate, fewer steps or a smaller rank, or pretraining text mixed into "
                      "the SFT data, to keep plain-text modelling")
    dpo_bpb = metric(per_model.get("dpo", {}), "text", "bits_per_byte")
    for method in ("int8", "int4", "nf4"):
        q = metric(per_model.get(method, {}), "text", "bits_per_byte")
        if q is not None and dpo_bpb:
            findings.append(f"{method}: bits per byte {dpo_bpb:.4f} -> {q:.4f} ({(q - dpo_bpb) / dpo_bpb:+.1%}) against "
                            "the unquantized aligned model")
    refusal = metric(per_model.get("dpo", {}), "safety", "unsafe_refusal_rate")
    if refusal is not None and refusal < 0.5:
        advice.append(f"safety: the aligned model refuses {refusal:.0%} of unsafe prompts; add refusals to the SFT "
                      "data or safety principles to the constitution")
    return findings, advice
