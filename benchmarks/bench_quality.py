"""Quality for a fixed CPU budget: a recipe trained for 10 minutes on real TinyStories text, in bits per byte.

    python benchmarks/bench_quality.py                                   # the plain recipe (configs/demo.yaml)
    python benchmarks/bench_quality.py --recipe configs/fast-tiny.yaml   # the fast recipe
    python benchmarks/bench_quality.py --recipe configs/fast-tiny.yaml --set train.optimizer=adamw --label "fast - muon"
    python benchmarks/bench_quality.py --vocab 2048 --label "plain, vocab 2048"

Each call trains one recipe and adds (or replaces, by label) its row in benchmarks/results/quality.json|md; the
peers' figures (measured on this machine kind, not re-run) are fixed rows of the same table.
Train text: ../shared/data/tinystories/tinystories_train_head_2MiB.txt (2,316 stories); a BPE of --vocab ids
(default 4096) is trained on it, then shards (slm prepare), then the recipe's model and optimizer settings with
the step count sized from the first steps' speed, train.max_minutes as a hard cap on training time (evaluation
excluded) and train.time_schedule so the decay completes by the deadline however fast the steps run.
Validation text: ../shared/data/tinystories/tinystories_validation_head_hf.txt (the first ~4% of the HF
validation split) split at blank lines into documents, cleaned and deduplicated by `slm prepare` into the
val split. Its loss and bits per byte are `slmkit.eval.likelihood`'s definition (lm-eval's rolling
log-likelihood, each document alone), computed twice: by the Trainer's final evaluation over the whole split
(train.eval_windows=null), and here, from the saved model, by `slmkit.eval.score_documents` on the split's
documents as text. The two must agree.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, RESULTS, SHARED_DATA, machine, write_results  # noqa: E402

from slmkit.data import read_manifest  # noqa: E402
from slmkit.eval import document_stream, score_documents  # noqa: E402
from slmkit.train.precision import autocast  # noqa: E402

TRAIN = SHARED_DATA / "tinystories" / "tinystories_train_head_2MiB.txt"
VALID = SHARED_DATA / "tinystories" / "tinystories_validation_head_hf.txt"
PROMPTS = ["Once upon a time", "Tom and his mom went to the park", "The little bird was sad because"]
RAW = RESULTS / "quality_runs.json"  # every measured row in full (samples too); quality.json|md: the table
GOAL = 1.00
# Measured on this machine kind (2-core CPU, the same 2 MiB train text and full validation text, 10 minutes);
# not re-run by this benchmark.
PEERS = [
    {"label": "nanoGPT's README CPU recipe (char-level, 0.8M params)", "val bits/byte": 1.66},
    {"label": "llama2.c train.py, our tiny shape and schedule (4.2M, fp32, 4096-id sentencepiece)",
     "val bits/byte": 1.24},
]


def split_documents(data_dir: Path, tok) -> list[str]:
    """The documents of the prepared val split as text: its token stream cut after each end-of-text, decoded."""
    tokens = np.concatenate([np.asarray(m) for m in read_manifest(data_dir).memmaps("val")]).astype(np.int64)
    ends = np.flatnonzero(tokens == tok.eos_id)
    docs = [tok.decode(tokens[s:e].tolist()) for s, e in zip(np.concatenate([[0], ends[:-1] + 1]), ends)]
    if document_stream(tok, docs) != tokens.tolist():
        raise SystemExit("the val split's documents do not re-encode to its tokens: the comparison would be void")
    return docs


def prepare_text(out: Path, recipe: Path, vocab: int):
    """A --vocab BPE on the train text and the train/val shards; (manifest, the data overrides)."""
    from slmkit.data import SourceConfig, prepare
    from slmkit.tokenizer import train_bpe
    from slmkit.train import load_run_config

    tok = train_bpe([TRAIN], vocab, ["<|endoftext|>"], "gpt2")
    tok.save(out / "tok")
    overrides = [f"data.out_dir={out / 'data'}", f"data.tokenizer.path={out / 'tok'}", "data.progress=false"]
    data_cfg = load_run_config(recipe, overrides).data
    data_cfg.sources = {
        "train": SourceConfig(kind="files", paths=[str(TRAIN)], delimiter="<|endoftext|>", split="train"),
        # in-training validation: the validation file's paragraphs (blank-line separated)
        "val": SourceConfig(kind="files", paths=[str(VALID)], delimiter="blank_line", split="val"),
    }
    return prepare(data_cfg, log=lambda *a: None), overrides


def sized_config(recipe: Path, base: list[str], minutes: float):
    """The recipe with max_steps sized from 12 measured steps, the time cap and the time-following schedule."""
    from slmkit.train import load_run_config, train

    probe = load_run_config(recipe, base + [
        "train.max_steps=12", "train.warmup_steps=2", "train.eval_every=0", "train.checkpoint_every=0",
        "train.sample_tokens=0", "train.plots=false", "train.tensorboard=false", "train.progress=false"])
    result = train(probe, log=lambda *a: None)
    step_seconds = result["train_seconds"] / result["step"]
    steps = max(int(minutes * 60 / step_seconds), 50)
    cfg = load_run_config(recipe, base + [
        f"train.max_steps={steps}", f"train.max_minutes={minutes}", "train.time_schedule=true",
        f"train.eval_every={max(steps // 5, 1)}", "train.eval_windows=null",  # the whole val split
        f"train.checkpoint_every={max(steps // 5, 1)}", f"train.warmup_steps={min(30, steps // 10)}"])
    return cfg, step_seconds


def run_recipe(args) -> dict:
    from slmkit.loading import load_model
    from slmkit.model import count_parameters
    from slmkit.tokenizer import load_tokenizer
    from slmkit.train import train
    from slmkit.train.evaluation import sample

    load_start, commit = os.getloadavg()[0], machine().get("commit")  # the code this run starts with
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    recipe = (REPO / args.recipe).resolve()
    manifest, overrides = prepare_text(out, recipe, args.vocab)
    train_tokens = manifest.data["splits"]["train"]["tokens"]
    base = overrides + [f"train.out_dir={out / 'run'}", "train.overwrite=true", "train.prepare_if_missing=false",
                        *args.set]
    cfg, step_seconds = sized_config(recipe, base, args.minutes)
    start = time.perf_counter()
    result = train(cfg)
    wall = time.perf_counter() - start
    model, _ = load_model(out / "run")
    tok = load_tokenizer(out / "run")
    docs = split_documents(out / "data", tok)
    val = score_documents(model, tok, docs, cfg.train.seq_len, cfg.train.eval_batch_size or cfg.train.batch_size,
                          autocast=lambda: autocast(cfg.train.precision, torch.device("cpu")))  # as in training
    print(f"validation bits/byte: Trainer {result['val_bpb']:.4f} ({result['val_tokens']:,} tokens), "
          f"benchmark {val.bits_per_byte:.4f} ({val.tokens:,} tokens, {val.bytes:,} bytes)")
    samples = sample(model, tok, PROMPTS, 100, 0.8, 50, "cpu", seed=7)
    tokens_seen = result["step"] * cfg.train.batch_size * cfg.train.grad_accum * cfg.train.seq_len
    return {
        "label": args.label or args.recipe + (" " + " ".join(args.set) if args.set else ""),
        "recipe": args.recipe, "overrides": " ".join(args.set), "vocab": cfg.model.vocab_size,
        "params M": count_parameters(cfg.model)["total"] / 1e6, "precision": cfg.train.precision,
        "budget min": args.minutes, "steps": result["step"], "s/step": step_seconds, "status": result["status"],
        "train tokens seen": tokens_seen, "epochs": tokens_seen / max(train_tokens, 1),
        "val loss (nats/token)": val.loss, "val bits/byte": val.bits_per_byte,
        "val bits/byte (Trainer)": result["val_bpb"], "train min": result["train_seconds"] / 60,
        "wall min": wall / 60, "load start": load_start, "load end": os.getloadavg()[0],
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "commit": commit,
        "val tokens": val.tokens, "val bytes": val.bytes, "train tokens": train_tokens,
        "samples": [" ".join(s.split()) for s in samples],
    }


TABLE = ("label", "params M", "vocab", "precision", "steps", "train tokens seen", "epochs", "val bits/byte",
         "val bits/byte (Trainer)", "train min", "load start", "load end", "date", "commit")


def report(rows: list[dict]) -> None:
    """quality.md: every measured row, then the peers'; the notes name the goal, the text and the samples."""
    table = [{k: r.get(k, "") for k in TABLE} for r in sorted(rows, key=lambda r: r["val bits/byte"])]
    table += [{"label": f"*{p['label']}* (peer, fixed)", "val bits/byte": p["val bits/byte"]} for p in PEERS]
    best = min(rows, key=lambda r: r["val bits/byte"])
    notes = [
        f"goal: <= {GOAL:.2f} bits per byte in 10 minutes (about 20% under the best peer); best measured: "
        f"{best['label']} at {best['val bits/byte']:.3f}",
        f"train: {TRAIN.name} ({best['train tokens']:,} tokens with the best row's tokenizer, after cleaning and "
        f"dedup); validation: {VALID.name} split at blank lines and cleaned as `slm prepare` does, each document "
        f"scored alone after end-of-text ({best['val bytes']:,} bytes of text)",
        "val bits/byte: slmkit.eval.score_documents on those documents from the saved model; 'val bits/byte "
        "(Trainer)' is the Trainer's final evaluation of the same split by the same definition: they agree",
        "each row: the recipe with max_steps sized from 12 measured steps, train.max_minutes=10 as the cap on "
        "training time (evaluation excluded) and train.time_schedule=true (the decay follows the larger of step "
        "and time progress); load is the 1-minute load average on this 2-core machine, start and end",
    ] + [f"sample {i + 1} ({best['label']}): {s}" for i, s in enumerate(best["samples"])]
    write_results("quality", "Quality: bits per byte after 10 CPU minutes on TinyStories", table, notes)
    RAW.write_text(json.dumps({"rows": rows}, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="configs/demo.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a recipe override")
    parser.add_argument("--label", help="the row's name (default: the recipe and overrides)")
    parser.add_argument("--vocab", type=int, default=4096, help="BPE vocabulary size trained on the text")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--out", default=str(REPO / "runs" / "bench-quality"))
    args = parser.parse_args()
    old = json.loads(RAW.read_text()).get("rows", []) if RAW.is_file() else []
    row = run_recipe(args)
    rows = [r for r in old if "label" in r and "samples" in r and r["label"] != row["label"]] + [row]
    report(rows)


if __name__ == "__main__":
    main()
