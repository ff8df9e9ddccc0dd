"""`slm tokenizer train|encode`: train a byte-level BPE tokenizer, or see how one splits text."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from slmkit.config import save_config

TRAIN_EXAMPLES = """examples:
  slm tokenizer train --input stories.txt --vocab-size 4096 --out runs/tok
  slm tokenizer train --input a.txt b.txt --vocab-size 10000 --pattern llama3 \\
      --special-token '<|endoftext|>' --special-token '<|im_start|>' --special-token '<|im_end|>' --out runs/tok10k
"""

ENCODE_EXAMPLES = """examples:
  slm tokenizer encode runs/tok "Once upon a time"
  slm tokenizer encode path/to/qwen3 "<|im_start|>user Hi<|im_end|>"
  slm tokenizer encode runs/tok --file story.txt --ids-only
"""


def register(subparsers) -> None:
    group = subparsers.add_parser("tokenizer", help="train a BPE tokenizer or inspect how one splits text")
    group.set_defaults(group_parser=group)
    verbs = group.add_subparsers(dest="tokenizer_verb", metavar="VERB")

    train = verbs.add_parser(
        "train",
        help="train a byte-level BPE tokenizer from text files",
        description="Train a byte-level BPE tokenizer from scratch; writes tokenizer.json + tokenizer_config.json "
        "(loadable by Hugging Face tokenizers/transformers).",
        epilog=TRAIN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("--input", nargs="+", required=True, metavar="FILE", help="UTF-8 text files")
    train.add_argument("--vocab-size", type=int, required=True, help="total size: 256 bytes + merges + specials")
    train.add_argument(
        "--special-token", action="append", dest="special_tokens", metavar="TOKEN",
        help="a special token, never split (repeatable; default: <|endoftext|>)",
    )
    train.add_argument("--pattern", default="gpt2", choices=["gpt2", "llama3", "qwen2"], help="pre-tokenization regex")
    train.add_argument("--workers", type=int, default=0, help="processes for counting (default: one per core)")
    train.add_argument("--out", required=True, help="output directory")
    train.set_defaults(func=run_train)

    encode = verbs.add_parser(
        "encode",
        help="show the ids and pieces a tokenizer gives a text",
        epilog=ENCODE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    encode.add_argument("tokenizer", help="directory with tokenizer.json (or GPT-2's encoder.json + vocab.bpe)")
    encode.add_argument("text", nargs="?", help="text to encode")
    encode.add_argument("--file", help="encode this file instead of TEXT")
    encode.add_argument("--ids-only", action="store_true", help="print only the ids")
    encode.set_defaults(func=run_encode)


def run_train(args) -> int:
    from slmkit.tokenizer import train_bpe
    from slmkit.tokenizer.config import TokenizerTrainConfig
    from slmkit.tokenizer.summary import bytes_per_token, sample_text

    from slmkit.config import from_dict

    config = from_dict(
        TokenizerTrainConfig,
        {
            "input": args.input,
            "vocab_size": args.vocab_size,
            "special_tokens": args.special_tokens or ["<|endoftext|>"],
            "pattern": args.pattern,
            "out": args.out,
            "num_workers": args.workers,
        },
    )
    start = time.perf_counter()
    tok = train_bpe(
        config.input,
        config.vocab_size,
        config.special_tokens,
        config.pattern,
        num_workers=config.num_workers or None,
        progress=True,
    )
    seconds = time.perf_counter() - start
    out = Path(config.out)
    tok.save(out)
    save_config(config, out / "tokenizer_train.yaml")
    sample = sample_text(config.input)
    compression = bytes_per_token(tok, sample)
    print(f"trained in {seconds:.1f}s: vocab {tok.vocab_size} ({len(tok.merges)} merges, "
          f"{len(tok.special_tokens)} special tokens), pattern {config.pattern}")
    where = "the training text" if sample.whole else (
        f"a sample of the training text ({sample.n_bytes / 1024:.0f} KiB in {len(sample.pieces)} pieces "
        "spread over it)")
    print(f"compression: {compression:.2f} bytes/token on {where}")
    print(f"saved to {out}/ (tokenizer.json, tokenizer_config.json, tokenizer_train.yaml)")
    return 0


def run_encode(args) -> int:
    from slmkit.errors import TokenizerError
    from slmkit.tokenizer import load_tokenizer

    if (args.text is None) == (args.file is None):
        raise TokenizerError("give either TEXT or --file FILE to encode")
    text = args.text if args.file is None else Path(args.file).read_text(encoding="utf-8")
    tok = load_tokenizer(args.tokenizer)
    ids = tok.encode(text)
    if args.ids_only:
        print(" ".join(map(str, ids)))
        return 0
    print(f"{len(ids)} tokens, {len(text.encode('utf-8')) / max(len(ids), 1):.2f} bytes/token")
    for i, piece in zip(ids, tok.token_pieces(ids)):
        print(f"{i:>8}  {piece!r}")
    return 0
