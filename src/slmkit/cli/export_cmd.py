"""`slm export DIR --format hf --out OUT`: write a model where other tools can load it."""

from __future__ import annotations

import argparse

EXAMPLES = """examples:
  slm export runs/demo --format hf --out hf/demo
  slm export runs/demo --format hf --dtype bfloat16 --out hf/demo-bf16

then, in Python:
  from transformers import AutoModelForCausalLM, AutoTokenizer
  model = AutoModelForCausalLM.from_pretrained("hf/demo")
  tokenizer = AutoTokenizer.from_pretrained("hf/demo")
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export", help="export a model to the Hugging Face format (transformers can load it)",
        description="Export a model directory (ours or Hugging Face) as a Hugging Face Llama, Qwen3, Qwen3-MoE or "
        "GPT-2 directory, with its tokenizer files, so transformers' AutoModelForCausalLM and AutoTokenizer load it.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", metavar="DIR", help="a checkpoint or model directory")
    parser.add_argument("--format", default="hf", choices=["hf"], help="output format (default: hf)")
    parser.add_argument("--out", required=True, help="output directory (replaced if it exists)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                        help="weight precision to write (default: float32)")
    parser.set_defaults(func=run)


def run(args) -> int:
    import torch

    from slmkit.interop.hf_export import export_hf
    from slmkit.loading import load_model

    model, info = load_model(args.model)
    out = export_hf(model, args.out, tokenizer_dir=info.path, dtype=getattr(torch, args.dtype),
                    special_tokens=info.special_tokens)
    from slmkit.interop.hf_config import export_architecture

    tokenizer = "with tokenizer" if (out / "tokenizer.json").is_file() else "no tokenizer files found to copy"
    print(f"wrote {out} ({export_architecture(model.config)}, {args.dtype}, {tokenizer})")
    return 0
