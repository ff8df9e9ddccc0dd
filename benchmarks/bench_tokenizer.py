"""Tokenizer benchmark: BPE training time against HF `tokenizers`, encoding throughput against tiktoken.

    python benchmarks/bench_tokenizer.py [--repeats 3]

Goal (issue 2): our training time within 3x of the `tokenizers` library's BPE trainer.
"""

from __future__ import annotations

import argparse
import os
import shutil
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
    args = parser.parse_args()
    rows = []
    for vocab in (4096, 10_000):
        t = ab_median({"slmkit": lambda: train_bpe([TRAIN_FILE], vocab), "hf": lambda: hf_train(vocab)}, args.repeats)
        rows.append({
            "task": f"train BPE vocab {vocab} on 2 MiB TinyStories",
            "slmkit s": t["slmkit"], "peer": "HF tokenizers", "peer s": t["hf"],
            "slmkit/peer time": t["slmkit"] / t["hf"], "goal": "<= 3x",
        })

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
    for name, label in (("pure", "slmkit pure Python (cold cache, incl. load)"), ("fast", "slmkit fast path (tokenizers)"),
                        ("tiktoken", "tiktoken")):
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
    write_results(
        "tokenizer", "Tokenizer: training and encoding", rows,
        ["median of alternating repetitions in one run; ids of all encoders are identical (tests/tokenizer)"],
    )


if __name__ == "__main__":
    main()
