"""`slm quantize RUN --method int8|int4|nf4 --out DIR`: write a quantized checkpoint and report on it."""

from __future__ import annotations

import argparse

EXAMPLES = """examples:
  slm quantize runs/demo --method int8 --out runs/demo-int8
  slm quantize runs/demo --method int4 --group-size 32 --out runs/demo-int4 --eval-text val.txt
  slm quantize runs/demo --method nf4 --out runs/demo-nf4
  slm generate runs/demo-int4 --prompt "Once upon a time"      # loads like any model directory

Prints the weight size before and after, the perplexity and bits per byte before and after on --eval-text
(when given: its documents, split at <|endoftext|> or blank lines, up to --eval-tokens tokens, scored in
256-token rolling windows as slmkit.eval.likelihood defines), and greedy decode speed (tokens/s, batch 1).
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "quantize", help="quantize a model's weights to int8, int4 or NF4",
        description="Quantize the linear layers of a model directory (ours or Hugging Face) and write a "
        "quantized checkpoint that generate and chat load directly.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", metavar="RUN", help="model directory")
    parser.add_argument("--method", required=True, choices=["int8", "int4", "nf4"])
    parser.add_argument("--group-size", type=int, default=64, choices=[32, 64, 128], help="int4 group size")
    parser.add_argument("--out", required=True, help="output directory (replaced if it exists)")
    parser.add_argument("--eval-text", metavar="FILE", help="text file for perplexity before/after")
    parser.add_argument("--eval-tokens", type=int, default=8192, help="tokens of --eval-text to use (default 8192)")
    parser.add_argument("--no-speed", action="store_true", help="skip the decode speed measurement")
    parser.set_defaults(func=run)


def run(args) -> int:

    from slmkit.errors import SlmError
    from slmkit.eval import decode_speed, score_documents
    from slmkit.eval.text_eval import documents_from_file
    from slmkit.infer import load_for_inference
    from slmkit.loading import load_model
    from slmkit.quant import quantize_model, quantized_nbytes, save_quantized

    model, tokenizer, _ = load_for_inference(args.model)
    if getattr(model, "quantization", None):
        raise SlmError(f"{args.model} is already quantized ({model.quantization['method']}); quantize the float model")
    documents = None
    if args.eval_text:
        if tokenizer is None:
            raise SlmError(f"{args.model} has no tokenizer.json, needed to encode --eval-text")
        documents = _documents_within(documents_from_file(args.eval_text), tokenizer, args.eval_tokens)
        seq_len = min(256, model.config.max_seq_len)
    before_bytes = quantized_nbytes(model)
    before = score_documents(model, tokenizer, documents, seq_len) if documents else None
    speed_before = None if args.no_speed else decode_speed(model)
    quantize_model(model, args.method, args.group_size)
    save_quantized(model, args.out, tokenizer_dir=args.model)
    quantized, _ = load_model(args.out)  # measure what was written, through the normal loading path
    after_bytes = quantized_nbytes(quantized)
    print(f"wrote {args.out} ({args.method}{f', group {args.group_size}' if args.method == 'int4' else ''})")
    print(f"size: {before_bytes / 1e6:.2f} MB -> {after_bytes / 1e6:.2f} MB ({before_bytes / after_bytes:.2f}x smaller)")
    if documents:
        after = score_documents(quantized, tokenizer, documents, seq_len)
        print(f"perplexity on {after.tokens} tokens: {before.perplexity:.3f} -> {after.perplexity:.3f} "
              f"({(after.perplexity / before.perplexity - 1) * 100:+.2f}%); "
              f"bits/byte {before.bits_per_byte:.4f} -> {after.bits_per_byte:.4f}")
    if speed_before is not None:
        speed_after = decode_speed(quantized)
        print(f"decode speed (greedy, batch 1): {speed_before:.0f} -> {speed_after:.0f} tokens/s "
              f"({speed_after / speed_before:.2f}x)")
    return 0


def _documents_within(documents: list[str], tokenizer, max_tokens: int) -> list[str]:
    """The first documents whose tokens add up to at most max_tokens (at least one, cut to fit)."""
    kept, total = [], 0
    for doc, ids in zip(documents, tokenizer.encode_batch(documents)):
        if total + len(ids) > max_tokens:
            if not kept:
                kept.append(tokenizer.decode(ids[:max_tokens]))
            break
        kept.append(doc)
        total += len(ids)
    return kept
