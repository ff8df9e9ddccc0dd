"""Tokenizer benchmark: BPE training time against HF `tokenizers`, encoding throughput against tiktoken.

    python benchmarks/bench_tokenizer.py [--repeats 3] [--process-repeats 5]

Goals: our training time within 3x of the `tokenizers` library's BPE trainer (issue 2), and the same for
the whole `slm tokenizer train` process against a whole process that trains with `tokenizers` (issue 11).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_DATA, ab_median, write_results  # noqa: E402

from slmkit.tokenizer import load_tokenizer, train_bpe  # noqa: E402

TRAIN_FILE = SHARED_DATA / "tinystories" / "tinystories_train_head_2MiB.txt"


def hf_train(vocab_size: int):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train([str(TRAIN_FILE)], trainer)
    return tok


# The peer's whole process: import tokenizers, train a byte-level BPE with our special token, save.
HF_TRAIN_SCRIPT = """
import sys
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
trainer = trainers.BpeTrainer(vocab_size=int(sys.argv[2]), special_tokens=["<|endoftext|>"],
                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
tok.train([sys.argv[1]], trainer)
tok.save(sys.argv[3])
"""


def slm_command() -> list[str]:
    """The installed `slm` entry point beside this Python (what a user runs), else `python -m slmkit`."""
    script = Path(sys.executable).with_name("slm")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "slmkit"]


def whole_process_row(vocab: int, repeats: int) -> tuple[dict, str | None]:
    """`slm tokenizer train` against a `tokenizers` training script, each a fresh process timed by wall clock."""
    out = Path(tempfile.mkdtemp())
    slm = [*slm_command(), "tokenizer", "train", "--input", str(TRAIN_FILE), "--vocab-size", str(vocab),
           "--out", str(out / "slm")]
    hf = [sys.executable, "-c", HF_TRAIN_SCRIPT, str(TRAIN_FILE), str(vocab), str(out / "hf.json")]

    def run(command):
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    load_start = os.getloadavg()[0]
    t = ab_median({"slmkit": lambda: run(slm), "hf": lambda: run(hf)}, repeats)
    load_end = os.getloadavg()[0]
    shutil.rmtree(out)
    row = {
        "task": f"whole process: slm tokenizer train, vocab {vocab}, 2 MiB TinyStories",
        "slmkit s": t["slmkit"], "peer": "HF tokenizers script (import, train, save)", "peer s": t["hf"],
        "slmkit/peer time": t["slmkit"] / t["hf"], "goal": "<= 3x", "load avg": f"{load_start:.2f} -> {load_end:.2f}",
    }
    note = None
    if max(load_start, load_end) > 0.5:
        note = (f"whole-process row: 1-minute load average {load_start:.2f} at start, {load_end:.2f} at end "
                "(the 2 cores are shared with other work), so its absolute times are noisy; the ratio is of "
                "alternating runs")
    return row, note


def tiktoken_gpt2():
    cache = Path(tempfile.mkdtemp())
    shutil.copy(SHARED_DATA / "gpt2-tokenizer" / "vocab.bpe", cache / "6d1cbeee0f20b3d9449abfede4726ed8212e3aee")
    shutil.copy(SHARED_DATA / "gpt2-tokenizer" / "encoder.json", cache / "6c7ea1a7e38e3a7f062df639a5b80947f075ffe6")
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
    import tiktoken

    return tiktoken.get_encoding("gpt2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--process-repeats", type=int, default=5, help="repetitions of the whole-process row")
    args = parser.parse_args()
    rows = []
    for vocab in (4096, 10_000):
        t = ab_median({"slmkit": lambda: train_bpe([TRAIN_FILE], vocab), "hf": lambda: hf_train(vocab)}, args.repeats)
        rows.append({
            "task": f"train BPE vocab {vocab} on 2 MiB TinyStories",
            "slmkit s": t["slmkit"], "peer": "HF tokenizers", "peer s": t["hf"],
            "slmkit/peer time": t["slmkit"] / t["hf"], "goal": "<= 3x",
        })
    row, load_note = whole_process_row(10_000, args.process_repeats)
    rows.append(row)

    text = TRAIN_FILE.read_text(encoding="utf-8")
    megabytes = len(text.encode("utf-8")) / 1e6
    gpt2_dir = SHARED_DATA / "gpt2-tokenizer"
    enc = tiktoken_gpt2()
    warm = load_tokenizer(gpt2_dir)
    warm.encode_batch([text])  # build the fast backend outside the timing

    def pure_cold():
        load_tokenizer(gpt2_dir).encode(text)  # fresh pre-token cache each time

    t = ab_median({
        "pure": pure_cold,
        "fast": lambda: warm.encode_batch([text]),
        "tiktoken": lambda: enc.encode(text, allowed_special="all"),
    }, args.repeats)
    for name, label in (("pure", "slmkit pure Python (cold cache, incl. load)"),
                        ("fast", "slmkit fast path (tokenizers)"), ("tiktoken", "tiktoken")):
        rows.append({"task": f"encode 2 MiB with GPT-2 vocab: {label}", "MB/s": megabytes / t[name],
                     "vs tiktoken": t["tiktoken"] / t[name]})

    docs = text.split("<|endoftext|>")
    t = ab_median({
        "fast": lambda: warm.encode_batch(docs),
        "processes": lambda: load_tokenizer(gpt2_dir).encode_batch(docs, fast=False, num_workers=2),
        "tiktoken": lambda: enc.encode_ordinary_batch(docs, num_threads=2),
    }, args.repeats)
    for name, label in (("fast", "fast path (tokenizers)"), ("processes", "pure Python, 2 processes, cold"),
                        ("tiktoken", "tiktoken, 2 threads")):
        rows.append({"task": f"batch-encode {len(docs)} stories with GPT-2 vocab: {label}", "MB/s": megabytes / t[name],
                     "vs tiktoken": t["tiktoken"] / t[name]})
    notes = [
        "median of alternating repetitions in one run; ids of all encoders are identical (tests/tokenizer)",
        f"whole process: {args.process_repeats} alternating runs each, wall clock of the subprocess; slm's includes "
        "start-up, counting, merges, saving three files and bytes/token on a 256 KiB sample of the input",
    ]
    write_results("tokenizer", "Tokenizer: training and encoding", rows, notes + ([load_note] if load_note else []))


if __name__ == "__main__":
    main()
