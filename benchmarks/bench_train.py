"""Training throughput: slmkit's Trainer step against Hugging Face transformers' Qwen3ForCausalLM.

    python benchmarks/bench_train.py [--repeats 5] [--steps 3]

Same configuration (vocab 4096, hidden 256, intermediate 768, 4 layers, 4 heads / 2 KV heads, head_dim 64,
tied embeddings, QK-norm), same batch (8 x 256 tokens), same precision (fp32, then bf16 autocast over fp32
weights), same work per step (forward, backward, clip to norm 1, AdamW step). Ours runs through
`Trainer.train_step` (the real loop: batch split, loss normalisation, finiteness check, schedule); HF's is
the loop HF's Trainer runs (`model(input_ids, labels)`, `clip_grad_norm_`, torch AdamW). Runs alternate
in one process (A/B, median of `repeats`). Goal (issue 5): >= 1.5x HF tokens/s in fp32 and in bf16.
A third contender, the compute floor, runs only the step's GEMMs and attention kernels: HF time / floor
time is the largest speedup any same-FLOP implementation could show on this machine.
On a lent GPU the script also reports tokens/s and MFU for the gpt2-124m and qwen3-283m shapes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ab_median, timed, write_results  # noqa: E402

from slmkit.model import Decoder, flops_per_token, preset  # noqa: E402
from slmkit.train.config import run_config_from_dict  # noqa: E402
from slmkit.train.trainer import Trainer  # noqa: E402

BATCH, SEQ, VOCAB = 8, 256, 4096


class RandomBatches:
    """Fixed random token windows (the data loader is not what is measured)."""

    def __init__(self, rows: int, seq: int, vocab: int):
        g = torch.Generator().manual_seed(0)
        self.tokens = torch.randint(0, vocab, (rows, seq + 1), generator=g)

    def next_batch(self):
        return self.tokens[:, :-1], self.tokens[:, 1:]

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def ours(precision: str, out_dir: Path, model_fields: dict, batch: int, seq: int, device: str = "cpu",
         compile: bool = False):
    cfg = run_config_from_dict({
        "model": model_fields,
        "train": {"out_dir": str(out_dir), "batch_size": batch, "seq_len": seq, "precision": precision,
                  "max_steps": 10_000, "warmup_steps": 0, "lr": 3e-4, "grad_clip": 1.0, "progress": False,
                  "device": device, "tensorboard": False, "compile": compile},
    })
    torch.manual_seed(0)
    trainer = Trainer(cfg, Decoder(cfg.model), RandomBatches(batch, seq, cfg.model.vocab_size),
                      log=lambda *a, **k: None)
    return trainer, trainer.train_step


def hf(precision: str):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(vocab_size=VOCAB, hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=64, tie_word_embeddings=True,
                         max_position_embeddings=1024, rope_theta=1_000_000.0, attn_implementation="sdpa")
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1)
    tokens = torch.randint(0, VOCAB, (BATCH, SEQ), generator=torch.Generator().manual_seed(0))

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = model(input_ids=tokens, labels=tokens).loss  # HF shifts the labels inside
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss)

    return step


def compute_floor(model: Decoder, batch: int, seq: int, dtype: torch.dtype):
    """The step's unavoidable compute alone: every Linear's three GEMMs (forward, input gradient, weight
    gradient) at the step's shapes and precision, and each layer's SDPA forward + backward.

    Any implementation of this model (ours, HF's) runs at least this work per step with the same torch
    kernels, so `HF time / floor time` is the largest speedup over HF that same-FLOP code could reach.
    """
    cfg = model.config
    rows = batch * seq
    gemms = []
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            x = torch.randn(rows, module.in_features, dtype=dtype)
            w = torch.randn(module.in_features, module.out_features, dtype=dtype)
            grad_y = torch.randn(rows, module.out_features, dtype=dtype)
            gemms.append((x, w, grad_y))
    q = torch.randn(batch, cfg.n_heads, seq, cfg.head_dim, dtype=dtype, requires_grad=True)
    k, v = (torch.randn(batch, cfg.n_kv_heads, seq, cfg.head_dim, dtype=dtype, requires_grad=True) for _ in range(2))
    grad_out = torch.randn_like(q)

    def step():
        for x, w, grad_y in gemms:
            x @ w, grad_y @ w.T, x.T @ grad_y
        for _ in range(cfg.n_layers):
            y = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True,
                                                                 enable_gqa=cfg.n_kv_heads != cfg.n_heads)
            torch.autograd.grad(y, (q, k, v), grad_out)
    return step


def reached_floor(rows: list[dict]) -> str:
    """Each contender's best tok/s as a share of the floor's, per precision."""
    parts = []
    for precision in ("fp32", "bf16"):
        mine = [r for r in rows if f", {precision}, " in r["task"]]
        floor = next((r for r in mine if "floor" in r["task"]), None)
        if floor:
            parts += [f"{precision} {r['task'].split('slmkit ')[1]} {r['tok/s (best)'] / floor['tok/s (best)']:.0%}"
                      for r in mine if r is not floor]
            parts.append(f"{precision} HF {floor['HF tok/s (best)'] / floor['tok/s (best)']:.0%}")
    return ", ".join(parts)


def alternate(fns: dict, repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each function, alternating A, B, A, B ... `repeats` times."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(timed(fn))
    return times


def repeat(fn, n: int):
    def run():
        for _ in range(n):
            fn()
    return run


def gpu_rows(out_dir: Path) -> list[dict]:
    rows = []
    for name, batch, seq in (("gpt2-124m", 16, 1024), ("qwen3-283m", 8, 2048)):
        fields = preset(name).to_dict()
        fields["max_seq_len"] = max(seq, fields["max_seq_len"]) if fields["positions"] == "learned" else fields["max_seq_len"]
        trainer, step = ours("bf16", out_dir / name, fields, batch, seq, device="cuda")
        step()
        torch.cuda.synchronize()
        seconds = ab_median({"step": repeat(step, 5)}, 3)["step"] / 5
        from slmkit.train.throughput import peak_flops

        tok_s = batch * seq / seconds
        peak = peak_flops(trainer.device, "bf16")
        mfu = flops_per_token(trainer.model_config, seq) * tok_s / peak if peak else None
        rows.append({"task": f"{name} bf16 {batch}x{seq} on {torch.cuda.get_device_name()}", "slmkit tok/s": tok_s,
                     "MFU": mfu, "goal": ">= 50% MFU"})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="training steps per timing")
    parser.add_argument("--compile", action="store_true",
                        help="also time train.compile=true (after its ~1-3 min of compilation per precision)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    load_start = os.getloadavg()[0]
    out = Path("runs/bench-train")
    rows = []
    fields = preset("tiny", vocab_size=VOCAB, max_seq_len=1024).to_dict()
    for precision in ("fp32", "bf16"):
        trainer, our_step = ours(precision, out / precision, fields, BATCH, SEQ)
        hf_step = hf(precision)
        floor_step = compute_floor(trainer.model, BATCH, SEQ, torch.bfloat16 if precision == "bf16" else torch.float32)
        fns = {"slmkit": repeat(our_step, args.steps), "hf": repeat(hf_step, args.steps),
               "floor": repeat(floor_step, args.steps)}
        our_step(), hf_step(), floor_step()  # warm up (first-call allocations, oneDNN kernel selection)
        if args.compile:
            _, compiled_step = ours(precision, out / f"{precision}-compiled", fields, BATCH, SEQ, compile=True)
            compiled_step(), compiled_step()  # compile (forward and backward graphs)
            fns["compiled"] = repeat(compiled_step, args.steps)
        times = alternate(fns, args.repeats)
        tokens = BATCH * SEQ * args.steps
        for name, label in (("slmkit", "eager (default)"), ("compiled", "train.compile=true"),
                            ("floor", "compute floor (GEMMs + SDPA alone)")):
            if name not in times:
                continue
            med = {k: statistics.median(v) for k, v in times.items()}
            best = {k: min(v) for k, v in times.items()}
            rows.append({
                "task": f"train step, tiny Qwen3, {BATCH}x{SEQ}, {precision}, {'' if name == 'floor' else 'slmkit '}{label}",
                "tok/s (median)": tokens / med[name], "HF tok/s (median)": tokens / med["hf"],
                "speedup (median)": med["hf"] / med[name],
                "tok/s (best)": tokens / best[name], "HF tok/s (best)": tokens / best["hf"],
                "speedup (best)": best["hf"] / best[name],
                "goal": "(largest possible speedup)" if name == "floor" else ">= 1.5x",
            })
            print(rows[-1], flush=True)
    if torch.cuda.is_available():
        rows += gpu_rows(out)
    load_end = os.getloadavg()[0]
    floor_note = "; ".join(
        f"{r['task'].split(', ')[3]}: HF/floor {r['speedup (median)']:.2f}x median, {r['speedup (best)']:.2f}x best"
        for r in rows if "floor" in r["task"])
    notes = [
        "same config, batch, precision and step (forward, backward, clip, AdamW) for both; A/B alternating in one "
        f"process, {args.repeats} timings of {args.steps} steps each; median and best (fastest) timing per side",
        f"1-minute load average {load_start:.1f} at the start and {load_end:.1f} at the end (2 cores: above ~2.5 "
        "another process was competing, and with 2 OpenMP threads per process a step can slow down 5-10x for "
        "seconds at a time; the best timings then estimate the uncontended speed)",
        "the compute floor row runs only the step's GEMMs (forward, input and weight gradients of every Linear) "
        "and each layer's SDPA forward+backward with the same torch kernels both models use; no same-FLOP "
        f"implementation can beat it, so HF time / floor time bounds any speedup over HF: {floor_note}",
        "share of the floor reached (best timings): " + reached_floor(rows),
    ]
    write_results("train", "Training throughput: slmkit Trainer vs HF transformers Qwen3ForCausalLM", rows, notes)


if __name__ == "__main__":
    main()
