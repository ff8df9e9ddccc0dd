"""Quality for a fixed CPU budget: the demo's `tiny` recipe trained for 10 minutes on real TinyStories text.

    python benchmarks/bench_quality.py [--minutes 10]

Train text: ../shared/data/tinystories/tinystories_train_head_2MiB.txt (2,316 stories); a 4096-id BPE is
trained on it, then shards (slm prepare), then configs/demo.yaml's model and optimizer settings with the
step count sized from the first steps' speed, train.max_minutes as a hard cap on training time (evaluation
excluded) and train.time_schedule so the cosine decay completes by the deadline however fast the steps run.
Validation text: ../shared/data/tinystories/tinystories_validation_head_hf.txt (the first ~4% of the HF
validation split) split at blank lines into documents, cleaned and deduplicated by `slm prepare` into the
val split. Its loss and bits per byte are `slmkit.eval.likelihood`'s definition (lm-eval's rolling
log-likelihood, each document alone), computed twice: by the Trainer's final evaluation over the whole split
(train.eval_windows=null), and here, from the saved model, by `slmkit.eval.score_documents` on the split's
documents as text. The two must agree.
Writes benchmarks/results/quality.md|json with three samples.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, SHARED_DATA, write_results  # noqa: E402

from slmkit.data import read_manifest  # noqa: E402
from slmkit.eval import document_stream, score_documents  # noqa: E402
from slmkit.train.precision import autocast  # noqa: E402

TRAIN = SHARED_DATA / "tinystories" / "tinystories_train_head_2MiB.txt"
VALID = SHARED_DATA / "tinystories" / "tinystories_validation_head_hf.txt"
PROMPTS = ["Once upon a time", "Tom and his mom went to the park", "The little bird was sad because"]


def split_documents(data_dir: Path, tok) -> list[str]:
    """The documents of the prepared val split as text: its token stream cut after each end-of-text, decoded."""
    tokens = np.concatenate([np.asarray(m) for m in read_manifest(data_dir).memmaps("val")]).astype(np.int64)
    ends = np.flatnonzero(tokens == tok.eos_id)
    docs = [tok.decode(tokens[s:e].tolist()) for s, e in zip(np.concatenate([[0], ends[:-1] + 1]), ends)]
    if document_stream(tok, docs) != tokens.tolist():
        raise SystemExit("the val split's documents do not re-encode to its tokens: the comparison would be void")
    return docs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--out", default=str(REPO / "runs" / "bench-quality"))
    args = parser.parse_args()
    load_start = os.getloadavg()[0]
    from slmkit.data import SourceConfig, prepare
    from slmkit.loading import load_model
    from slmkit.model import count_parameters
    from slmkit.tokenizer import load_tokenizer, train_bpe
    from slmkit.train import load_run_config, train
    from slmkit.train.evaluation import sample

    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    tok = train_bpe([TRAIN], 4096, ["<|endoftext|>"], "gpt2")
    tok.save(out / "tok")
    overrides = [f"data.out_dir={out / 'data'}", f"data.tokenizer.path={out / 'tok'}", "data.progress=false"]
    data_cfg = load_run_config(REPO / "configs" / "demo.yaml", overrides).data
    data_cfg.sources = {
        "train": SourceConfig(kind="files", paths=[str(TRAIN)], delimiter="<|endoftext|>", split="train"),
        # in-training validation: the validation file's paragraphs (blank-line separated)
        "val": SourceConfig(kind="files", paths=[str(VALID)], delimiter="blank_line", split="val"),
    }
    manifest = prepare(data_cfg, log=lambda *a: None)
    train_tokens = manifest.data["splits"]["train"]["tokens"]

    base = overrides + [f"train.out_dir={out / 'run'}", "train.overwrite=true", "train.prepare_if_missing=false"]
    # measure the step time (on this machine, now) to size the schedule to the budget
    probe = load_run_config(REPO / "configs" / "demo.yaml",
                            base + ["train.max_steps=12", "train.warmup_steps=2", "train.eval_every=0",
                                    "train.checkpoint_every=0", "train.sample_tokens=0", "train.plots=false",
                                    "train.tensorboard=false", "train.progress=false"])
    result = train(probe, log=lambda *a: None)
    step_seconds = result["train_seconds"] / result["step"]
    steps = max(int(args.minutes * 60 / step_seconds), 50)
    cfg = load_run_config(REPO / "configs" / "demo.yaml", base + [
        f"train.max_steps={steps}", f"train.max_minutes={args.minutes}", "train.time_schedule=true",
        f"train.eval_every={max(steps // 5, 1)}", "train.eval_windows=null",  # the whole val split
        f"train.checkpoint_every={max(steps // 5, 1)}", f"train.warmup_steps={min(30, steps // 10)}"])
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
    val_source = manifest.data["sources"]["val"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        samples = sample(model, tok, PROMPTS, 100, 0.8, 50, "cpu", seed=7)
    tokens_seen = result["step"] * cfg.train.batch_size * cfg.train.seq_len
    rows = [{
        "model": f"tiny ({count_parameters(cfg.model)['total'] / 1e6:.2f}M params, vocab {cfg.model.vocab_size})",
        "budget min": args.minutes, "steps": result["step"], "status": result["status"],
        "train tokens seen": tokens_seen, "epochs": tokens_seen / max(train_tokens, 1),
        "val loss (nats/token)": val.loss, "val ppl": val.perplexity, "val bits/byte": val.bits_per_byte,
        "val bits/byte (Trainer)": result["val_bpb"], "val tokens": val.tokens, "val bytes": val.bytes,
        "train min": result["train_seconds"] / 60, "wall min": wall / 60,
    }]
    notes = [
        f"train: {TRAIN.name} ({train_tokens:,} tokens after cleaning/dedup); validation: {VALID.name} split at "
        f"blank lines, {val_source['docs_kept']:,} of its {val_source['docs_read']:,} paragraphs kept by cleaning and "
        f"dedup, each scored alone after end-of-text: {val.tokens:,} scored tokens, {val.bytes:,} bytes of text",
        "val loss / ppl / bits per byte: slmkit.eval.score_documents on those documents from the saved model; "
        "'val bits/byte (Trainer)' is the Trainer's final evaluation of the same split (the same definition, "
        "computed over the shards during training); "
        + ("the two agree" if abs(result["val_bpb"] - val.bits_per_byte) < 1e-6
           else f"they differ by {result['val_bpb'] - val.bits_per_byte:+.2e}"),
        f"recipe: configs/demo.yaml (bf16 autocast, batch 8x256, lr 2e-3 cosine to 2e-4) with max_steps={steps} "
        f"sized from a measured {step_seconds:.2f} s/step, and train.time_schedule=true: the cosine follows the "
        "larger of step and time progress, so it reaches its floor at the 10-minute mark even when the machine "
        "slows down mid-run",
        f"load average (1 min) {load_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end on this 2-core "
        "machine; a busier machine fits fewer steps (and so a higher loss) into the same minutes",
        "reference point: llama2.c's stories260K (Llama-2-style, 512-token vocab) reaches val loss 1.297 after "
        "far longer training; losses with different vocabularies compare only through bits per byte",
    ] + [f"sample {i + 1}: {' '.join(s.split())}" for i, s in enumerate(samples)]
    write_results("quality", "Quality: tiny recipe, 10-minute CPU budget, TinyStories", rows, notes)


if __name__ == "__main__":
    main()
