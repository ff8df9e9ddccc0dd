"""`slm export DIR --out OUT [--format hf|slmkit|peft|gguf] [--merge]`: write a model where other tools can load it."""

from __future__ import annotations

import argparse

EXAMPLES = """examples:
  slm export runs/demo --format hf --out hf/demo
  slm export runs/demo --format hf --dtype bfloat16 --out hf/demo-bf16
  slm export runs/demo-sft --merge --out runs/demo-sft-merged     # a LoRA fine-tune folded into its base
  slm export runs/demo-sft --merge --format hf --out hf/demo-sft  # ... as a Hugging Face model
  slm export runs/demo-sft --format peft --out peft/demo-sft      # the adapter alone, for PEFT
  slm export runs/demo --format gguf --out demo.gguf              # llama.cpp / ollama / LM Studio (+ demo.Modelfile)
  slm export runs/demo-sft --merge --format gguf --quant q8_0 --out sft.gguf

then, in Python:
  from transformers import AutoModelForCausalLM, AutoTokenizer
  model = AutoModelForCausalLM.from_pretrained("hf/demo")
  tokenizer = AutoTokenizer.from_pretrained("hf/demo")
  from peft import PeftModel                               # --format peft: OUT/base is the HF base
  model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained("peft/demo-sft/base"), "peft/demo-sft")
or, with llama.cpp and ollama:
  llama-cli -m demo.gguf -p "Once upon a time" --temp 0
  ollama create demo -f demo.Modelfile && ollama run demo
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export", help="export a model (or a fine-tune's adapter) for Hugging Face, PEFT or slmkit",
        description="Export a model directory (ours or Hugging Face) as a Hugging Face Llama, Qwen3, Qwen3-MoE or "
        "GPT-2 directory, with its tokenizer files, so transformers' AutoModelForCausalLM and AutoTokenizer load it. "
        "An adapter directory (slm finetune with LoRA/QLoRA) exports merged into its base (--merge), or as a PEFT "
        "adapter with its base beside it (--format peft).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", metavar="DIR", help="a checkpoint, model or adapter directory")
    parser.add_argument("--format", choices=["hf", "slmkit", "peft", "gguf"],
                        help="hf (default), slmkit (default with --merge), peft (adapter directories) or gguf "
                        "(one file for llama.cpp / ollama, with an ollama Modelfile beside it)")
    parser.add_argument("--quant", default="f32", choices=["f32", "f16", "bf16", "q8_0", "q4_0"],
                        help="GGUF tensor type of the matrices (default f32; norms stay f32)")
    parser.add_argument("--merge", action="store_true", help="fold an adapter into its base's weights")
    parser.add_argument("--base", help="where an slmkit adapter's base is, if it has moved")
    parser.add_argument("--out", required=True, help="output directory (replaced if it exists); a .gguf file "
                        "for --format gguf")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                        help="weight precision to write (default: float32)")
    parser.set_defaults(func=run)


def run(args) -> int:
    import torch

    from slmkit.errors import ConfigError
    from slmkit.finetune.adapter import is_adapter_dir
    from slmkit.finetune.export import export_merged, export_peft
    from slmkit.interop.hf_config import export_architecture
    from slmkit.interop.hf_export import export_hf
    from slmkit.loading import load_model

    fmt = args.format or ("slmkit" if args.merge else "hf")
    dtype = getattr(torch, args.dtype)
    adapter = is_adapter_dir(args.model)
    if fmt == "gguf":
        return _export_gguf(args, adapter)
    if fmt == "peft":
        if not adapter:
            raise ConfigError(f"--format peft exports a fine-tune's adapter; {args.model} has no adapter.json")
        out = export_peft(args.model, args.out, base=args.base, dtype=dtype)
        print(f"wrote the PEFT adapter to {out} and its Hugging Face base to {out / 'base'}")
        return 0
    if adapter:
        if not args.merge:
            raise ConfigError(f"{args.model} is an adapter: add --merge to fold it into its base, "
                              "or use --format peft for the adapter alone")
        out, config = export_merged(args.model, args.out, fmt, base=args.base, dtype=dtype)
        print(f"wrote {out} ({fmt}, adapter merged into its base)")
        return 0
    if fmt == "slmkit":
        raise ConfigError(f"{args.model} is already a model directory: --format slmkit is for merging adapters")
    model, info = load_model(args.model)
    out = export_hf(model, args.out, tokenizer_dir=info.path, dtype=dtype, special_tokens=info.special_tokens)
    tokenizer = "with tokenizer" if (out / "tokenizer.json").is_file() else "no tokenizer files found to copy"
    print(f"wrote {out} ({export_architecture(model.config)}, {args.dtype}, {tokenizer})")
    return 0


def _export_gguf(args, adapter: bool) -> int:
    from pathlib import Path

    from slmkit.errors import ConfigError
    from slmkit.fileio import write_text_atomic
    from slmkit.finetune.loading import load_for_use
    from slmkit.interop.gguf_file import export_gguf
    from slmkit.interop.ollama_modelfile import modelfile_text

    if adapter and not args.merge:
        raise ConfigError(f"{args.model} is an adapter: add --merge to write it folded into its base as GGUF")
    out = Path(args.out)
    if out.suffix.lower() != ".gguf":
        raise ConfigError(f"--out {args.out!r}: a GGUF export is one file; name it NAME.gguf")
    model, tokenizer, _ = load_for_use(args.model, base=args.base)
    export_gguf(model, tokenizer, out, quant=args.quant)
    modelfile = out.with_suffix(".Modelfile")
    write_text_atomic(modelfile, modelfile_text(tokenizer, out.name, model.config.max_seq_len))
    print(f"wrote {out} ({args.quant}, {out.stat().st_size / 1e6:.1f} MB) and {modelfile} for ollama")
    return 0
