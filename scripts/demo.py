"""The slmkit demo: raw text to a small story-telling model on a laptop CPU in about five minutes.

    make demo                      # or: .venv/bin/python scripts/demo.py
    DATA=path/to/stories.txt make demo     # your own text (a file, a glob or a directory of .txt)
    STEPS=200 make demo            # a shorter run

1. data: TinyStories from the Hugging Face hub when it is reachable (its 19 MB validation text file,
   ~22K stories), otherwise generated children's stories; DATA=path uses local text instead
2. a byte-level BPE tokenizer (up to 4096 ids) trained from scratch on it
3. cleaned, deduplicated, tokenized shards (slm prepare)
4. the `tiny` Qwen3-style model (4.2M parameters) trained with configs/demo.yaml (slm train)
5. validation loss / bits per byte, three sample stories, and where everything was written
"""

from __future__ import annotations

import glob
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNS = Path(os.environ.get("RUNS", REPO / "runs"))
WORK = RUNS / "demo-work"
SYNTHETIC_STORIES = 12_000
# A cap on training time so the whole demo stays under 10 minutes even on a slow or busy machine
# (a quiet 2-core machine finishes the 450 steps in 2-3 minutes); with train.time_schedule the learning
# rate still decays to its floor by the cap when the steps run slower than that.
TRAIN_MINUTES = float(os.environ.get("TRAIN_MINUTES", 5.0))
SAMPLE_SENTENCE = "Once upon a time, a little girl named Lily found a shiny red ball in the garden."


def say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def local_text(spec: str) -> tuple[list[str], str]:
    """DATA=...: files, globs or a directory of .txt files, and how documents are separated in them."""
    path = Path(spec).expanduser()
    files = sorted(str(p) for p in path.rglob("*.txt")) if path.is_dir() else sorted(glob.glob(str(path)))
    if not files:
        sys.exit(f"DATA={spec}: no such file (or no .txt files in that directory)")
    with open(files[0], encoding="utf-8", errors="replace") as f:
        head = f.read(1 << 20)
    return files, "<|endoftext|>" if "<|endoftext|>" in head else "blank_line"


def tinystories_from_hub() -> Path | None:
    """TinyStories-valid.txt from the hub (19 MB), or None when the hub cannot be reached quickly."""
    try:
        from huggingface_hub import hf_hub_download

        from slmkit.data.sources import hub_reachable

        if os.environ.get("HF_HUB_OFFLINE") or not hub_reachable(timeout=3.0):
            return None
        return Path(hf_hub_download("roneneldan/TinyStories", "TinyStories-valid.txt", repo_type="dataset",
                                    etag_timeout=10))
    except Exception as e:  # no huggingface_hub, a proxy, a timeout: the demo still runs offline
        print(f"   (TinyStories download failed: {' '.join(str(e).split())[:160]})")
        return None


def synthetic_text(path: Path) -> Path:
    from slmkit.data.sources import generate_stories

    path.write_text("<|endoftext|>".join(generate_stories(SYNTHETIC_STORIES, seed=0)), encoding="utf-8")
    return path


def get_data() -> tuple[list[str], str]:
    say("1/5 data")
    if os.environ.get("DATA"):
        files, delimiter = local_text(os.environ["DATA"])
        print(f"   using local text from DATA: {len(files)} file(s), documents separated by {delimiter!r}")
        return files, delimiter
    hub = tinystories_from_hub()
    if hub is not None:
        print(f"   using TinyStories from the Hugging Face hub ({hub.stat().st_size / 1e6:.0f} MB: {hub})")
        return [str(hub)], "<|endoftext|>"
    text = synthetic_text(WORK / "synthetic_stories.txt")
    print(f"   the Hugging Face hub is not reachable: using {SYNTHETIC_STORIES:,} generated children's stories "
          f"({text.stat().st_size / 1e6:.1f} MB, slmkit.data.sources.synthetic); DATA=path uses your own text")
    return [str(text)], "<|endoftext|>"


def train_tokenizer(files: list[str]):
    from slmkit.tokenizer import train_bpe

    say("2/5 tokenizer: byte-level BPE (up to 4096 ids), trained from scratch")
    start = time.perf_counter()
    tok = train_bpe(files, 4096, ["<|endoftext|>"], "gpt2")
    tok.save(WORK / "tokenizer")
    ids = tok.encode(SAMPLE_SENTENCE)
    # A small corpus runs out of pairs to merge before 4096 ids (the synthetic stories use ~940 words).
    print(f"   trained in {time.perf_counter() - start:.1f}s: {tok.vocab_size} ids ({len(tok.merges)} merges); "
          f"{SAMPLE_SENTENCE!r} becomes {len(ids)} tokens:")
    print("   " + " | ".join(tok.decode([i]) for i in ids))
    return tok


def prepare_shards(files: list[str], delimiter: str) -> list[str]:
    """The demo recipe's data section (cleaning, dedup, split), reading the chosen text files."""
    from slmkit.data import SourceConfig, prepare
    from slmkit.train.config import load_run_config

    say("3/5 shards: clean, deduplicate, tokenize (slm prepare)")
    overrides = [f"data.out_dir={WORK / 'data'}", f"data.tokenizer.path={WORK / 'tokenizer'}", "data.progress=false"]
    data_cfg = load_run_config(REPO / "configs" / "demo.yaml", overrides).data
    data_cfg.sources = {"text": SourceConfig(kind="files", paths=files, delimiter=delimiter)}
    start = time.perf_counter()
    manifest = prepare(data_cfg, log=lambda *a: None)
    splits = manifest.data["splits"]
    print(f"   {splits['train']['tokens']:,} training tokens ({splits['train']['docs']:,} stories), "
          f"{splits['val']['tokens']:,} validation tokens, in {time.perf_counter() - start:.1f}s")
    return overrides


def train_model(overrides: list[str]) -> dict:
    from slmkit.train import load_run_config, train

    steps = os.environ.get("STEPS")
    overrides = overrides + [f"train.out_dir={RUNS / 'demo'}", "train.overwrite=true",
                             "train.prepare_if_missing=false", f"train.max_minutes={TRAIN_MINUTES}",
                             "train.time_schedule=true"]
    if steps:
        overrides += [f"train.max_steps={steps}", f"train.warmup_steps={min(30, int(steps) // 10)}",
                      f"train.eval_every={max(int(steps) // 3, 1)}", f"train.checkpoint_every={max(int(steps) // 3, 1)}"]
    cfg = load_run_config(REPO / "configs" / "demo.yaml", overrides)
    from slmkit.model import count_parameters

    say(f"4/5 training the tiny model ({count_parameters(cfg.model)['total'] / 1e6:.1f}M parameters, "
        f"{cfg.train.max_steps} steps of {cfg.train.batch_size}x{cfg.train.seq_len} tokens, {cfg.train.precision})")
    return train(cfg, log=print)


def stories(run_dir: Path) -> list[str]:
    from slmkit.infer import Generator

    prompts = ["Once upon a time", "One day, a little boy named Tom", "The cat and the dog"]
    gen = Generator.from_pretrained(run_dir)  # the engine `slm generate` and `slm serve` use
    outs = gen.generate(prompts, max_new_tokens=120, temperature=0.8, top_k=50, seed=7)
    return [prompt + out.text for prompt, out in zip(prompts, outs)]


def main() -> int:
    started = time.perf_counter()
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    files, delimiter = get_data()
    train_tokenizer(files)
    overrides = prepare_shards(files, delimiter)
    result = train_model(overrides)
    if result["status"] == "interrupted":
        print(f"\ninterrupted at step {result['step']}; the checkpoint is in {result['checkpoint']}")
        return 130
    say("5/5 results")
    if result["status"] == "time_limit":
        print(f"   (training stopped at the {TRAIN_MINUTES}-minute cap after {result['step']} steps: "
              "this machine is slower or busier than expected)")
    if result.get("val_loss") is not None:
        print(f"   validation loss {result['val_loss']:.3f} nats/token (perplexity {result['val_ppl']:.1f}), "
              f"{result['val_bpb']:.3f} bits per byte")
    run_dir = Path(result["run_dir"])
    for i, text in enumerate(stories(run_dir), 1):
        print(f"\n   story {i}: {text.strip()}")
    print(f"\n   run directory: {run_dir}/ (final model, config.yaml, metrics.jsonl, run_info.json, tensorboard/)")
    print(f"   plots:         {result.get('plot') or '(matplotlib not installed)'}")
    print(f"   checkpoints:   {run_dir / 'checkpoints'}/ (resume with: slm train configs/demo.yaml "
          f"train.out_dir={run_dir} train.resume=auto)")
    print(f"   done in {(time.perf_counter() - started) / 60:.1f} minutes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
