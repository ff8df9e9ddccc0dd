"""benchmarks/results/finetune.md from finetune.json's raw numbers (bench_finetune.py calls `render`).

    (RESULTS / "finetune.md").write_text(render(json.loads((RESULTS / "finetune.json").read_text()), goals))
"""

from __future__ import annotations

import statistics

KIND_LABELS = {"story_request": "story_request (names the name, the kind and the object)",
               "story_request_name_and_object": "story_request: the name and the object (the goal's wording)",
               "story_question": "story_question", "multi_turn": "multi_turn", "all": "all kinds (strict checks)"}


def _machine(section: dict) -> str:
    m = section["machine"]
    return (f"{section['date']} — {m.get('cpu_model', m.get('processor'))}, {m['cpus']} cores, torch {m.get('torch')}, "
            f"{section['threads']} torch thread(s), commit {m.get('commit', '?')}, load average "
            f"{section['load_start']:.2f} -> {section.get('load_end', float('nan')):.2f}")


def _table(header: list[str], rows: list[list]) -> list[str]:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
        return str(v)
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
        ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]


def _pct(score: dict) -> str:
    return f"{100 * score['accuracy']:.0f}% ({score['correct']}/{score['n']})"


def _trial_label(trial: dict) -> str:
    label = " ".join(trial["overrides"]) or "recipe as is"
    settings = trial["finetune"].get("settings")
    return f"{label} ({settings})" if settings else label


def quality(trials: list[dict], goal: float) -> list[str]:
    if not trials:
        return []
    as_is = next((t for t in trials if not t["overrides"]), trials[0])
    best = max(trials, key=lambda t: (t["after"]["story_request_name_and_object"]["accuracy"], t["after"]["all"]["accuracy"]))
    ft = as_is["finetune"]
    out = ["## Quality: the demo model, LoRA chat SFT for <= 5 CPU minutes", "", _machine(as_is), "",
           f"Base: {as_is['base']} (configs/demo.yaml, {as_is['base_run'].get('final_step')} steps, val loss "
           f"{as_is['base_run'].get('val_loss', float('nan')):.3f}). Fine-tune: configs/sft-lora.yaml "
           f"({_trial_label(as_is)}) on the bundled instruction set ({as_is['train_examples']} train examples): "
           f"{ft['step']} of {ft['max_steps']} steps, status {ft['status']}, {ft['train_seconds'] / 60:.1f} min of "
           f"training ({ft['wall_seconds'] / 60:.1f} min wall with evaluation and saving); held-out SFT loss "
           f"{ft.get('val_loss', float('nan')):.3f}. {ft['summary']}", "",
           f"Held-out: the first {as_is['heldout_examples']} of the 200 held-out examples ((name, object) pairs "
           "train never uses), greedy, scored by slmkit.data.sources.instruction_checks.check_answer.", ""]
    rows = []
    for key, label in KIND_LABELS.items():
        if key in as_is["after"]:
            mark = f">= {goal:.0%}" if key == "story_request_name_and_object" else ""
            rows.append([label, _pct(as_is["before"][key]), _pct(as_is["after"][key]), mark])
    out += _table(["kind", "before (base, plain transcript)", "after (LoRA, ChatML)", "goal"], rows) + [""]
    if len(trials) > 1:
        out += ["Recipe trials (overrides of configs/sft-lora.yaml, each <= 5 minutes):", ""]
        out += _table(["overrides", "steps", "train min", "story_request name+object", "story_request strict",
                       "story_question", "multi_turn", "held-out SFT loss"],
                      [[_trial_label(t), t["finetune"]["step"], t["finetune"]["train_seconds"] / 60,
                        _pct(t["after"]["story_request_name_and_object"]), _pct(t["after"]["story_request"]),
                        _pct(t["after"]["story_question"]), _pct(t["after"]["multi_turn"]),
                        t["finetune"].get("val_loss", float("nan"))] for t in trials]) + [""]
        out += [f"Best: {_trial_label(best)} ({_pct(best['after']['story_request_name_and_object'])} of story "
                "requests name the name and the object).", ""]
    out += ["- before: the base has no chat template, so it is prompted as `slm chat` prompts such a model: "
            "\"User: ...\\nAssistant:\" lines, stopped at \"\\nUser:\"; after: the adapter directory through "
            "slmkit.finetune.loading.load_for_use (merged), its ChatML template, stopped at <|im_end|>",
            f"- new tokens at most: story_request 200 (the 256-token context ends longer ones), story_question "
            f"32, multi_turn 64; {as_is['heldout_too_long']} of the held-out conversations are longer than 257 "
            "tokens with this tokenizer (the demo's, 1,356 ids) and were cut in the eval loss", ""]
    out += ["### Three chat transcripts (held-out, greedy)", ""]
    for t in as_is["transcripts"]:
        turns = "\n".join(f"{m['role']}: {m['content']}" for m in t["messages"])
        out += [f"**{t['kind']}** — check: {t['check']}", "", "```", turns, "```", "",
                "after (LoRA):", "```", t["after"], "```", "", "before (base):", "```", t["before"][:600], "```", ""]
    return out


def speed(section: dict | None, goal: float) -> list[str]:
    if not section:
        return []
    out = ["## Speed: LoRA fine-tune step, slmkit Trainer vs PEFT + transformers", "", _machine(section), ""]
    rows = []
    for p in section["pairs"]:
        per_round = p["ratio_per_round"]
        rows.append([p["shape"], p["params_m"], p["batch"], p["trainable_slmkit"], p["slmkit_tok_s"], p["peft_tok_s"],
                     p["ratio_median"], f"{min(per_round):.2f}-{max(per_round):.2f}",
                     f"{statistics.median(per_round):.2f}", f">= {goal}x"])
    out += _table(["shape", "params M", "batch", "trainable", "slmkit tok/s", "PEFT tok/s", "ratio (median times)",
                   "ratio per round (min-max)", "ratio per round (median)", "goal"], rows) + [""]
    p0 = section["pairs"][0]
    out += [f"- same base weights (export_hf -> AutoModelForCausalLM, sdpa), same LoRA (r 16, alpha 32, all-linear, "
            f"dropout 0; {p0['trainable_peft']:,} trainable on the PEFT side), same packed rows (4 batches of the "
            f"recipe's SFTBatches, ~{p0['targets_per_step']:.0f} assistant targets per step), bf16 autocast, loss "
            "mean over targets, clip 1.0, the Trainer's fused AdamW, the same torch threads; tokens/s counts every "
            "position of the 8x256 rows",
            "- initial fp32 losses (adapters' B = 0, so both are the base): "
            + ", ".join(f"{p['shape']} slmkit {p['initial_loss_slmkit']:.6f} / PEFT {p['initial_loss_peft']:.6f}"
                        for p in section["pairs"])
            + " — the same packed attention (transformers 5 reads restarting position_ids as packing)",
            f"- {p0['rounds']} rounds, alternating (who goes first swaps each round), one optimizer step per timing "
            "after 2 warm-up steps each; ratio = PEFT seconds / slmkit seconds", ""]
    for p in section["pairs"]:
        if "profile" not in p:
            continue
        out += [f"Profile of one step, {p['shape']} (torch.profiler, share of self CPU time):", ""]
        families = list(p["profile"]["slmkit"]["shares"])
        out += _table(["", *families, "total ms"],
                      [[side, *(f"{100 * prof['shares'][f]:.0f}%" for f in families), prof["total_ms"]]
                       for side, prof in p["profile"].items()]) + [""]
        for side, prof in p["profile"].items():
            top = ", ".join(f"{o['op']} {o['self_ms']:.0f} ms x{o['calls']}" for o in prof["top"][:8])
            out += [f"- {side} top ops: {top}"]
        ours, theirs = p["profile"]["slmkit"], p["profile"]["peft"]
        floor = ours["total_ms"] * sum(ours["shares"][f] for f in families[:2])
        out += [f"- GEMMs + SDPA (the same kernels on both sides) take {floor:.0f} ms of slmkit's profiled step; a "
                f"step that kept only them would run {theirs['total_ms'] / floor:.2f}x PEFT's profiled step: the "
                "most any same-FLOP rewrite of the rest could reach", ""]
    return out


def memory(section: dict | None, goal: float) -> list[str]:
    if not section:
        return []
    idle = next(r for r in section["rows"] if r["method"] == "idle")
    rows = [r for r in section["rows"] if r["method"] != "idle"]
    by_name = {r["method"]: r for r in rows}
    full = by_name["full"]

    def net(r, key):
        return r[key] - idle["peak_mb"]

    def reference(r):  # a chunked-loss row is compared with full fine-tuning on the same loss
        return by_name.get("full + chunked loss", full) if "chunked loss" in r["method"] else full

    out = ["## Memory: full vs LoRA vs QLoRA fine-tuning, qwen3-283m shape on CPU", "", _machine(section), ""]
    table = []
    for r in rows:
        process_peak = max(r["build_peak_mb"], r["train_peak_mb"])
        table.append([r["method"], r["recipe"], "yes" if r["gradient_checkpointing"] else "no", f"{r['trainable']:,}",
                      sum(r["by_dtype_mb"].values()), net(r, "rss_built_mb"), net(r, "train_peak_mb"),
                      net(r, "train_peak_mb") / net(reference(r), "train_peak_mb"), process_peak - idle["peak_mb"],
                      (process_peak - idle["peak_mb"]) / (max(reference(r)["build_peak_mb"],
                                                              reference(r)["train_peak_mb"]) - idle["peak_mb"]),
                      r["seconds_per_step"]])
    out += _table(["method", "recipe", "grad. checkpointing", "trainable", "model tensors MB",
                   "RSS after build MB", "training peak MB", "x full (training)", "process peak MB",
                   "x full (process)", "s/step"], table) + [""]
    q = next((r for r in rows if r["method"] == "qlora"), None)
    out += [f"- batch {full['batch']} x {full['seq']} random ids (first half prompt: -100), {full['steps']} Trainer "
            "steps per method (bf16 autocast, fused AdamW, the recipe's settings), random weights, built by "
            "finetune.run.make_trainable (full: all trainable; lora: add_lora; qlora: quantize_model(nf4, "
            "include_head=False) + add_lora), one fresh process per method",
            f"- MB are RSS minus an idle process's (python + torch + slmkit imported: {idle['peak_mb']:.0f} MB). "
            "'RSS after build': the model made trainable, after gc and malloc_trim. 'training peak': VmHWM over "
            "the training steps alone (reset with /proc/self/clear_refs after the build). 'process peak': "
            "the whole process, including the fp32 model that every method builds (or loads) before quantizing",
            "- 'x full': against full fine-tuning with the same loss (the chunked-loss rows against 'full + chunked "
            "loss', train.loss_chunk_size=64; the rest against the recipe's full fine-tune)"]
    if q:
        out += [f"- QLoRA: {q['dense_block_linear_mb']:.0f} MB of dense Linear weights left in the blocks (the fp32 "
                f"originals are gone); its tensors by dtype: "
                + ", ".join(f"{k} {v:.0f} MB" for k, v in q["by_dtype_mb"].items())
                + f" (the float32 embedding and untied head, not quantized: {q.get('embed_head_mb', 0):.0f} MB)"
                + f"; goal QLoRA <= {goal}x full: {net(q, 'train_peak_mb') / net(full, 'train_peak_mb'):.3f}x "
                "(training peak)"]
    return out + [""]


def render(raw: dict, goals: dict) -> str:
    lines = ["# Fine-tuning: quality, speed and memory (benchmarks/bench_finetune.py)", "",
             "Each section below is dated and names its machine; raw numbers in finetune.json.", ""]
    lines += quality(raw.get("quality_trials", []), goals["quality"])
    lines += speed(raw.get("speed"), goals["speed"])
    lines += memory(raw.get("memory"), goals["memory"])
    return "\n".join(lines) + "\n"
