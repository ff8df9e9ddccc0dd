"""`slm chat RUN`: an interactive loop with history (reads stdin, so it also works piped)."""

from __future__ import annotations

import argparse
import sys

from slmkit.cli.generate_cmd import add_sampling_arguments, sampling_params
from slmkit.tokenizer.chat_template import chat_stop_strings, render_chat

EXAMPLES = """examples:
  slm chat runs/demo-sft
  slm chat runs/demo --temperature 0.7 --max-new-tokens 100
  printf 'Hello\\nTell me a story\\n' | slm chat runs/demo-sft

With a tokenizer chat template (Jinja, as in Hugging Face tokenizer_config.json) the conversation is
rendered by it; without one the model continues a plain transcript ("User: ...\\nAssistant:").
The oldest turns are dropped when the conversation outgrows the context window.
Commands: /reset clears the history, /exit (or end of input) quits.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "chat", help="chat with a model interactively (history, chat template)",
        description="Chat with a model directory (ours, Hugging Face or quantized). Each line of input is "
        "one user turn; replies are streamed.", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", metavar="RUN", help="model directory with a tokenizer, or an adapter directory "
                        "(slm finetune's LoRA run, or a PEFT adapter) that loads with its base")
    parser.add_argument("--base", help="the base model of a PEFT adapter (default: its base_model_name_or_path), "
                        "or another copy of an slmkit adapter's base")
    parser.add_argument("--system", default=None, help="system message (chat templates only)")
    add_sampling_arguments(parser, temperature=0.7, max_new_tokens=200)
    parser.set_defaults(func=run)


def run(args) -> int:
    from slmkit.errors import SlmError
    from slmkit.finetune.loading import load_for_use
    from slmkit.infer import Generator

    base = sampling_params(args)
    model, tokenizer, eos = load_for_use(args.model, base=args.base)
    if tokenizer is None:
        raise SlmError(f"{args.model} has no tokenizer.json; copy the tokenizer into the model directory")
    gen = Generator(model, tokenizer, eos)
    stop = list(base.stop) + chat_stop_strings(tokenizer)
    system = [{"role": "system", "content": args.system}] if args.system else []
    history: list[dict] = []
    interactive = sys.stdin.isatty()
    budget = gen.context_length - base.max_new_tokens
    while True:
        if interactive:
            print("> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line or line.strip() == "/exit":
            break
        line = line.rstrip("\n")
        if line.strip() == "/reset":
            history = []
            print("(history cleared)")
            continue
        if not line.strip():
            continue
        history.append({"role": "user", "content": line})
        while True:
            ids = tokenizer.encode(render_chat(tokenizer, system + history))
            if len(ids) <= budget or len(history) <= 1:
                break
            history = history[2:] if len(history) > 2 else history[1:]  # drop the oldest exchange
        if len(ids) > budget:
            history.pop()
            print(f"error: this message alone ({len(ids)} tokens) does not fit the context window "
                  f"({gen.context_length} tokens, {base.max_new_tokens} kept for the reply)", file=sys.stderr)
            continue
        params = sampling_params(args)
        params.stop = stop
        reply = ""
        for delta in gen.stream(ids, params):
            reply += delta
            sys.stdout.write(delta)
            sys.stdout.flush()
        sys.stdout.write("\n")
        sys.stdout.flush()
        history.append({"role": "assistant", "content": reply.strip()})
    return 0
