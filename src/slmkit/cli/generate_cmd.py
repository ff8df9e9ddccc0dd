"""`slm generate RUN --prompt TEXT`: sample a continuation (streamed), optionally with a draft model."""

from __future__ import annotations

import argparse
import sys
import time

EXAMPLES = """examples:
  slm generate runs/demo --prompt "Once upon a time" --temperature 0.8
  slm generate runs/demo --prompt "Once upon a time" --temperature 0 --max-new-tokens 50
  slm generate runs/demo --prompt "Tom and Sam" --top-p 0.9 --min-p 0.05 --seed 1 --stop "The end."
  slm generate runs/demo-int4 --prompt "Once"                 # quantized checkpoints load the same way
  slm generate runs/big --draft runs/small --prompt "Once"     # speculative decoding

A prompt longer than the model's context window is an error (no silent truncation); generation stops
at the end of the window with finish reason "length".
"""


def add_sampling_arguments(parser, temperature: float = 0.8, max_new_tokens: int = 128) -> None:
    group = parser.add_argument_group("sampling")
    group.add_argument("--max-new-tokens", type=int, default=max_new_tokens, help=f"default {max_new_tokens}")
    group.add_argument("--temperature", type=float, default=temperature,
                       help=f"0 = greedy (default {temperature})")
    group.add_argument("--top-k", type=int, default=0, help="keep the k most likely tokens (0 = off)")
    group.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling threshold (1 = off)")
    group.add_argument("--min-p", type=float, default=0.0, help="drop tokens below min_p x the top probability")
    group.add_argument("--repetition-penalty", type=float, default=1.0, help="CTRL-style penalty (1 = off)")
    group.add_argument("--presence-penalty", type=float, default=0.0, help="OpenAI-style, -2..2")
    group.add_argument("--frequency-penalty", type=float, default=0.0, help="OpenAI-style, -2..2")
    group.add_argument("--seed", type=int, default=None, help="random seed for this request")
    group.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")


def sampling_params(args, **extra):
    from slmkit.infer import SamplingParams

    return SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                          top_p=args.top_p, min_p=args.min_p, repetition_penalty=args.repetition_penalty,
                          presence_penalty=args.presence_penalty, frequency_penalty=args.frequency_penalty,
                          seed=args.seed, stop=list(args.stop), **extra)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "generate", help="generate text from a prompt (streamed; sampling flags; --draft for speculative)",
        description="Generate a continuation of --prompt with a model directory (ours, Hugging Face, or a "
        "quantized checkpoint from 'slm quantize'). Text is streamed as it is produced.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", metavar="RUN", help="model directory with a tokenizer, or an adapter directory "
                        "(slm finetune's LoRA run, or a PEFT adapter) that loads with its base")
    parser.add_argument("--base", help="the base model of a PEFT adapter (default: its base_model_name_or_path), "
                        "or another copy of an slmkit adapter's base")
    parser.add_argument("--prompt", required=True, help="the text to continue")
    add_sampling_arguments(parser)
    parser.add_argument("--draft", metavar="RUN2", help="a smaller model with the same tokenizer for speculative "
                        "decoding")
    parser.add_argument("--draft-k", type=int, default=4, help="draft tokens per verification (default 4)")
    parser.add_argument("--stats", action="store_true", help="print tokens/s (and acceptance rate) to stderr")
    parser.set_defaults(func=run)


def run(args) -> int:
    from slmkit.errors import SlmError
    from slmkit.finetune.loading import load_for_use
    from slmkit.infer import Generator, SpeculativeGenerator, load_for_inference

    params = sampling_params(args)  # invalid values fail before the model is loaded
    model, tokenizer, eos = load_for_use(args.model, base=args.base)
    if tokenizer is None:
        raise SlmError(f"{args.model} has no tokenizer.json; copy the tokenizer into the model directory")
    ids = tokenizer.encode(args.prompt)
    gen = Generator(model, tokenizer, eos)
    gen.check_prompt(ids)
    start = time.perf_counter()
    if args.draft:
        draft, _, _ = load_for_inference(args.draft)
        spec = SpeculativeGenerator(model, draft, tokenizer, k=args.draft_k, eos_ids=eos)
        result = spec.generate(ids, params)
        print(args.prompt + result.text)
        n, extra = len(result.token_ids), (f", {result.acceptance_rate:.0%} of draft tokens accepted, "
                                           f"{result.target_forwards} target forwards")
    else:
        sys.stdout.write(args.prompt)
        n = 0
        for delta in gen.stream(ids, params):
            sys.stdout.write(delta)
            sys.stdout.flush()
            n += 1
        sys.stdout.write("\n")
        extra = ""
    if args.stats:
        elapsed = time.perf_counter() - start
        print(f"[{n} {'tokens' if args.draft else 'chunks'} in {elapsed:.2f}s{extra}]", file=sys.stderr)
    return 0
