"""Fine-tuning benchmark: chat-SFT quality of the demo model, LoRA step speed vs PEFT, memory of full / LoRA / QLoRA.

    .venv/bin/python benchmarks/bench_finetune.py                      # all three sections (~20 min on 2 cores)
    .venv/bin/python benchmarks/bench_finetune.py --quality            # or --speed, --memory; any combination
    .venv/bin/python benchmarks/bench_finetune.py --quality --set train.lr=3e-3 --set lora.r=32   # a recipe trial

1. Quality: the demo model (configs/demo.yaml trained into benchmarks/.cache/demo when missing) and the bundled
   instruction set (`slm data sft-synthetic`'s files, written to benchmarks/.cache/sft/). Held-out accuracy by
   code (instruction_checks.check_answer) before, and after `finetune()` with configs/sft-lora.yaml for at
   most 5 CPU minutes; greedy decoding through slmkit's Generator. "Before" is the base as `slm chat` drives a
   model without a chat template: the plain "User: ... / Assistant:" transcript, stopped at "\\nUser:"; "after"
   is the adapter directory loaded by load_for_use (its tokenizer's ChatML template, <|im_end|> as EOS).
2. Speed: finetune_cost.speed_pair on the demo's tiny shape and a 43M shape (random weights).
3. Memory: finetune_cost.measure_memory for the qwen3-283m shape, one process per method.

Each section's raw numbers go to benchmarks/results/finetune.json (a section run alone keeps the others');
benchmarks/results/finetune.md is rendered from all of them (finetune_report.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import finetune_cost  # noqa: E402
import finetune_report  # noqa: E402
from common import REPO, RESULTS, machine  # noqa: E402

from slmkit.data.sources.instruction_checks import mentions, prompt_and_reference, score_answers  # noqa: E402
from slmkit.data.sources.instructions import KINDS, write_instruction_files  # noqa: E402
from slmkit.errors import SlmError  # noqa: E402
from slmkit.finetune.assistant_mask import tokenize_conversations  # noqa: E402
from slmkit.finetune.chat_data import load_sft_examples  # noqa: E402
from slmkit.finetune.config import read_finetune_config  # noqa: E402
from slmkit.finetune.loading import load_for_use  # noqa: E402
from slmkit.finetune.run import finetune  # noqa: E402
from slmkit.finetune.sft_batches import SFTBatches  # noqa: E402
from slmkit.infer import Generator  # noqa: E402
from slmkit.tokenizer import load_tokenizer  # noqa: E402
from slmkit.tokenizer.chat_template import chat_stop_strings, render_chat, with_default_chat_template  # noqa: E402
from slmkit.train import train_from_recipe  # noqa: E402

CACHE = Path(__file__).resolve().parent / ".cache"
RAW = RESULTS / "finetune.json"
# One torch thread by default: on this shared 2-core machine two threads made the demo's training steps ~7x
# slower whenever another process held a core (every parallel region waits for the descheduled thread).
THREADS = int(os.environ.get("BENCH_THREADS", "1"))
MAX_NEW = {"story_request": 200, "story_question": 32, "multi_turn": 64}  # stories run to ~180 tokens
SPEED_GOAL, MEMORY_GOAL, QUALITY_GOAL = 1.3, 0.35, 0.6


def log_to(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a", encoding="utf-8")

    def log(*parts, **_):
        handle.write(" ".join(str(p) for p in parts) + "\n")
        handle.flush()
    return log


def section_header() -> dict:
    return {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
            "threads": torch.get_num_threads(), "load_start": os.getloadavg()[0]}


# ---------------------------------------------------------------------------------------------------- inputs
def demo_base() -> Path:
    """benchmarks/.cache/demo: configs/demo.yaml trained as `slm train` does (data and tokenizer in the cache too)."""
    run = CACHE / "demo"
    if (run / "model.safetensors").is_file() and base_summary(run).get("final_step") == 450:
        return run
    print(f"training the demo base into {run} (configs/demo.yaml, ~4-5 min at 1 thread) ...", flush=True)
    train_from_recipe(REPO / "configs" / "demo.yaml",
                      [f"train.out_dir={run}", f"data.out_dir={CACHE / 'demo-data'}",
                       f"data.tokenizer.path={CACHE / 'demo-tok'}", "train.progress=false", "data.progress=false",
                       "train.overwrite=true"], log=log_to(CACHE / "logs" / "demo-train.log"))
    return run


def base_summary(run: Path) -> dict:
    """The base run's final step and validation numbers, from its metrics.jsonl."""
    if not (run / "metrics.jsonl").is_file():
        return {}
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    train = [r for r in rows if r.get("kind") == "train"]
    evals = [r for r in rows if r.get("kind") == "eval" and "val_loss" in r]
    out = {"final_step": train[-1]["step"] if train else 0}
    if evals:
        out.update(val_loss=evals[-1]["val_loss"], val_bpb=evals[-1].get("val_bpb"))
    return out


def sft_files() -> tuple[Path, Path]:
    """The bundled instruction set with the CLI's defaults (4000 train, 200 held out, seed 0); deterministic."""
    train, held = CACHE / "sft" / "sft.jsonl", CACHE / "sft" / "sft.heldout.jsonl"
    if not (train.is_file() and held.is_file()):
        write_instruction_files(train, examples=4000, heldout=200, seed=0)
    return train, held


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------------- quality
def answer_all(model, tokenizer, eos_ids, examples: list[dict]) -> list[str]:
    """Greedy replies to every example's prompt (all turns but the last), rendered as `slm chat` renders them."""
    gen = Generator(model, tokenizer, eos_ids, max_batch=8)
    stops, answers = chat_stop_strings(tokenizer), [""] * len(examples)
    for kind in KINDS:
        todo = []
        for i, example in enumerate(examples):
            if example["check"]["kind"] == kind:
                ids = tokenizer.encode(render_chat(tokenizer, prompt_and_reference(example)[0]))
                if len(ids) < gen.context_length:  # a prompt longer than the context: no answer, counted wrong
                    todo.append((i, ids))
        if todo:
            done = gen.generate([ids for _, ids in todo], temperature=0, max_new_tokens=MAX_NEW[kind], stop=stops)
            for (i, _), completion in zip(todo, done):
                answers[i] = completion.text.strip()
    return answers


def accuracy(examples: list[dict], answers: list[str]) -> dict:
    """score_answers per kind, plus the goal's looser story-request figure: the name and the object named."""
    scores = score_answers(examples, answers)
    requests = [(e["check"], a) for e, a in zip(examples, answers) if e["check"]["kind"] == "story_request"]
    named = sum(mentions(a, c["name"]) and mentions(a, c["object"]) for c, a in requests)
    scores["story_request_name_and_object"] = {"n": len(requests), "correct": named,
                                               "accuracy": named / max(len(requests), 1)}
    return scores


def run_finetune(base: Path, train: Path, held: Path, out: Path, overrides: list[str]) -> dict:
    cfg = read_finetune_config(REPO / "configs" / "sft-lora.yaml", [
        f"base={base}", f"data.train={train}", f"data.eval={held}", f"train.out_dir={out}", "train.overwrite=true",
        "train.progress=false", "train.max_minutes=5", *overrides])
    if cfg.train.max_minutes is None or cfg.train.max_minutes > 5:
        raise SystemExit("the quality goal is for <= 5 CPU minutes of fine-tuning: keep train.max_minutes <= 5")
    lines: list[str] = []
    log = log_to(CACHE / "logs" / "finetune.log")
    start = time.perf_counter()
    result = finetune(cfg, log=lambda *a, **k: (lines.append(" ".join(map(str, a))), log(*a)))
    keep = ("status", "step", "train_seconds", "val_loss", "best_val_loss")
    t, lora = cfg.train, cfg.lora
    settings = (f"lr {t.lr:g}, max_steps {t.max_steps}, time_schedule {str(t.time_schedule).lower()}, "
                f"r {lora.r}, alpha {lora.alpha:g}")
    return {**{k: result[k] for k in keep if k in result}, "wall_seconds": time.perf_counter() - start,
            "settings": settings,
            "max_steps": cfg.train.max_steps, "summary": next((s for s in lines if "fine-tune of" in s), "")}


def quality(heldout: int, overrides: list[str]) -> dict:
    header = section_header()
    base = demo_base()
    train, held_path = sft_files()
    examples = read_jsonl(held_path)[:heldout]  # kinds come in shuffled rounds of three: equal shares
    out = CACHE / "demo-sft"
    before_model, before_tok, before_eos = load_for_use(base)
    t0 = time.perf_counter()
    before = answer_all(before_model, before_tok, before_eos, examples)
    before_seconds = time.perf_counter() - t0
    tuned = run_finetune(base, train, held_path, out, overrides)
    model, tok, eos = load_for_use(out)
    after = answer_all(model, tok, eos, examples)
    chat_tok = with_default_chat_template(load_tokenizer(base))[0]
    lengths = [len(e.ids) for e in tokenize_conversations(chat_tok, [x["messages"] for x in examples])]
    transcripts = []
    for kind in KINDS:
        i = next(k for k, e in enumerate(examples) if e["check"]["kind"] == kind)
        transcripts.append({"kind": kind, "messages": prompt_and_reference(examples[i])[0],
                            "reference": prompt_and_reference(examples[i])[1], "check": examples[i]["check"],
                            "before": before[i], "after": after[i]})
    return {**header, "overrides": overrides, "base": str(base.relative_to(REPO)), "base_run": base_summary(base),
            "train_examples": len(load_sft_examples(train)), "heldout_examples": len(examples),
            "heldout_too_long": sum(n > 257 for n in lengths), "finetune": tuned,
            "before": accuracy(examples, before), "after": accuracy(examples, after),
            "generate_seconds_before": before_seconds, "transcripts": transcripts, "load_end": os.getloadavg()[0]}


# ---------------------------------------------------------------------------------------------------- speed, memory
def speed(rounds: int, profile: bool) -> dict:
    header = section_header()
    base = demo_base()
    tok = with_default_chat_template(load_tokenizer(base))[0]
    examples = tokenize_conversations(tok, load_sft_examples(sft_files()[0], limit=600))
    source = SFTBatches(examples, rows_per_step=8, seq_len=256, seed=0, pack=True, pad_id=tok.eos_id)
    batches = [source.next_batch() for _ in range(4)]  # the recipe's packed rows: batch 8 x 256
    shapes = finetune_cost.speed_shapes(tok.vocab_size)
    pairs = []
    for name, config in shapes.items():
        print(f"speed: {name} ...", flush=True)
        pairs.append(finetune_cost.speed_pair(name, config, batches, rounds, 1, profile))
    return {**header, "pairs": pairs, "load_end": os.getloadavg()[0]}


def memory(steps: int, seq: int) -> dict:
    header = section_header()
    rows = finetune_cost.measure_memory(list(finetune_cost.MEMORY_METHODS), 1, seq, steps, THREADS)
    return {**header, "rows": rows, "load_end": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quality", action="store_true")
    parser.add_argument("--speed", action="store_true")
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--heldout", type=int, default=150, help="held-out examples to score (of 200)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an override of configs/sft-lora.yaml for the quality run (repeatable)")
    parser.add_argument("--rounds", type=int, default=7, help="alternating timing rounds per speed pair")
    parser.add_argument("--no-profile", action="store_true", help="skip the torch.profiler step of the speed pairs")
    parser.add_argument("--memory-steps", type=int, default=3)
    parser.add_argument("--memory-seq", type=int, default=256)
    args = parser.parse_args()
    everything = not (args.quality or args.speed or args.memory)
    torch.set_num_threads(THREADS)
    raw = json.loads(RAW.read_text()) if RAW.is_file() else {}
    if args.quality or everything:
        result = quality(args.heldout, args.set)
        # a trial is one set of overrides of the recipe (trials without recorded settings predate a recipe change)
        trials = [t for t in raw.get("quality_trials", [])
                  if t["overrides"] != args.set and "settings" in t["finetune"]] + [result]
        raw["quality_trials"] = trials
        _save(raw)
    if args.speed or everything:
        raw["speed"] = speed(args.rounds, not args.no_profile)
        _save(raw)
    if args.memory or everything:
        raw["memory"] = memory(args.memory_steps, args.memory_seq)
        _save(raw)
    print((RESULTS / "finetune.md").read_text())


def _save(raw: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    RAW.write_text(json.dumps(raw, indent=1))
    goals = {"quality": QUALITY_GOAL, "speed": SPEED_GOAL, "memory": MEMORY_GOAL}
    (RESULTS / "finetune.md").write_text(finetune_report.render(raw, goals))


if __name__ == "__main__":
    try:
        main()
    except SlmError as e:
        raise SystemExit(f"error: {e}") from None
