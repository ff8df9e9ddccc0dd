"""`slm serve RUN`: an OpenAI-compatible API (with continuous batching) and a web playground."""

from __future__ import annotations

import argparse

EXAMPLES = """examples:
  slm serve runs/demo                                   # http://127.0.0.1:8000 (playground at /)
  slm serve runs/demo-int8 --port 8080 --api-key secret
  slm serve runs/demo --host 0.0.0.0 --max-batch 32 --max-tokens 256 --max-queue 128
  slm serve runs/demo --adapter stories=runs/demo-sft --adapter qa=runs/demo-qa   # one base, three model ids

then, from any OpenAI client:
  from openai import OpenAI
  client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="secret")
  client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "Hi"}])

  curl http://127.0.0.1:8000/v1/completions -H 'Content-Type: application/json' \\
       -d '{"model": "demo", "prompt": "Once upon a time", "max_tokens": 40, "stream": true}'
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve", help="serve a model over an OpenAI-compatible HTTP API with a web playground",
        description="Serve a model directory (a run, a quantized checkpoint, or a Hugging Face model) at "
        "/v1/models, /v1/completions and /v1/chat/completions (streaming or not), with /health, /ready, "
        "/metrics (Prometheus) and a web playground at /. Concurrent requests share one batched decode "
        "loop. SIGTERM stops accepting, lets in-flight requests finish, then exits.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", metavar="RUN", help="a checkpoint or model directory (with tokenizer.json)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default: 127.0.0.1, this machine only; 0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    parser.add_argument("--api-key", default=None,
                        help="require 'Authorization: Bearer KEY' on /v1/* and /metrics "
                        "(default: $SLM_API_KEY, else no key)")
    parser.add_argument("--max-batch", type=_positive, default=16,
                        help="sequences decoded together in one step (default: 16; 1 = one at a time)")
    parser.add_argument("--max-tokens", type=_positive, default=512,
                        help="the largest max_tokens a request may ask for (default: 512)")
    parser.add_argument("--max-queue", type=_positive, default=64,
                        help="sequences allowed to wait for a batch slot; more get 429 (default: 64)")
    parser.add_argument("--max-context", type=_positive, default=None,
                        help="KV cache length per sequence (default: the model's context window)")
    parser.add_argument("--max-body-bytes", type=_positive, default=1 << 20,
                        help="largest request body accepted; larger gets 413 (default: 1 MiB)")
    parser.add_argument("--name", default=None, help="the model id clients use (default: the directory name)")
    parser.add_argument("--adapter", action="append", type=_adapter_spec, default=[], metavar="NAME=DIR",
                        help="also serve this fine-tune of RUN (an slmkit or PEFT adapter directory) as model NAME; "
                        "repeat for more. Requests for different adapters share the decode batch")
    parser.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                        help="cast weights at load (default: as stored)")
    parser.add_argument("--shutdown-timeout", type=float, default=30.0,
                        help="seconds in-flight requests get to finish after SIGTERM (default: 30)")
    parser.set_defaults(func=run)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _adapter_spec(text: str) -> tuple[str, str]:
    name, sep, directory = text.partition("=")
    if not sep or not name.strip() or not directory:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR (e.g. stories=runs/demo-sft), got {text!r}")
    return name.strip(), directory


def adapters_to_serve(base: str, specs: list[tuple[str, str]], base_name: str | None) -> dict[str, str]:
    """{model id: adapter dir} from the --adapter options, checked: unique ids, none the base's, dirs that exist."""
    from pathlib import Path

    from slmkit.errors import ConfigError
    from slmkit.finetune.adapter import is_adapter_dir
    from slmkit.finetune.peft_format import is_peft_dir

    if specs and (is_adapter_dir(base) or is_peft_dir(base)):
        raise ConfigError(f"{base} is an adapter; with --adapter, RUN is the base model they share "
                          "(serve one adapter alone as `slm serve ADAPTER_DIR`)")
    base_id = base_name or Path(base).resolve().name
    adapters: dict[str, str] = {}
    for name, directory in specs:
        if name == base_id or name in adapters:
            raise ConfigError(f"--adapter {name}={directory}: the model id {name!r} is already taken "
                              f"({'the base' if name == base_id else 'another adapter'}); give each a different NAME")
        if not Path(directory).is_dir():
            raise ConfigError(f"--adapter {name}={directory}: no such directory")
        adapters[name] = directory
    return adapters


def run(args) -> int:
    import logging
    import os

    from slmkit.serve.server import serve
    from slmkit.serve.service import ServeConfig

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = ServeConfig(model=args.model, name=args.name, host=args.host, port=args.port,
                         api_key=args.api_key or os.environ.get("SLM_API_KEY") or None,
                         max_batch=args.max_batch, max_tokens=args.max_tokens, max_queue=args.max_queue,
                         max_context=args.max_context, max_body_bytes=args.max_body_bytes,
                         shutdown_timeout=args.shutdown_timeout, dtype=args.dtype,
                         adapters=adapters_to_serve(args.model, args.adapter, args.name))
    serve(config)
    return 0
