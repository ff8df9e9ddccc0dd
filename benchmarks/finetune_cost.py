"""What a fine-tune costs: LoRA step speed against PEFT + transformers, and peak memory of full / LoRA / QLoRA.

Used by bench_finetune.py (`--speed`, `--memory`); the memory measurement runs one method per process:

    .venv/bin/python benchmarks/finetune_cost.py memory-worker qlora      # prints one JSON line
    .venv/bin/python benchmarks/finetune_cost.py memory-worker idle       # python + torch + slmkit, nothing built

Speed: slmkit's side is the Trainer's own `train_step` (the step `slm finetune` runs: bf16 autocast, loss over
assistant targets / their count, backward, clip, fused AdamW) on a model made trainable by the recipe's
`make_trainable`; the peer is the same base exported with `export_hf`, loaded by AutoModelForCausalLM and
wrapped by PEFT's get_peft_model (same r, alpha, all-linear), stepped with the same optimizer builder, clip and
autocast, on the very same packed rows (transformers 5 reads the restart of `position_ids` as packing, so
attention stays within each example on both sides; the initial losses are compared to show it).
Memory: peak RSS (VmHWM, reset with /proc/self/clear_refs once the model is built) minus an idle process's.
"""

from __future__ import annotations

import ctypes
import gc
import itertools
import json
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO  # noqa: E402

from slmkit.finetune.config import read_finetune_config  # noqa: E402
from slmkit.finetune.run import make_trainable  # noqa: E402
from slmkit.finetune.sft_batches import sft_loss  # noqa: E402
from slmkit.model import Decoder, preset  # noqa: E402
from slmkit.train.optim import build_optimizer  # noqa: E402
from slmkit.train.trainer import Trainer  # noqa: E402

MEMORY_METHODS = {  # label -> (recipe, extra overrides)
    "full": ("sft-full", []),
    "full + checkpointing": ("sft-full", ["train.gradient_checkpointing=true"]),
    "lora": ("sft-lora", []),
    "lora + checkpointing": ("sft-lora", ["train.gradient_checkpointing=true"]),
    "qlora": ("sft-qlora", []),
    # the loss over 64 positions at a time: [seq, 151K] logits and the head's bf16 copy never live whole
    "full + chunked loss": ("sft-full", ["train.loss_chunk_size=64"]),
    "qlora + chunked loss": ("sft-qlora", ["train.loss_chunk_size=64"]),
}
QUIET = ["train.progress=false", "train.eval_every=0", "train.checkpoint_every=0", "train.sample_tokens=0",
         "train.plots=false", "train.tensorboard=false", "train.warmup_steps=0"]


class FixedBatches:
    """A Trainer batch source that cycles through prepared batches (both sides of the A/B get the same ones)."""

    def __init__(self, batches: list[dict]):
        self._it = itertools.cycle(batches)

    def next_batch(self) -> dict:
        return next(self._it)

    def state_dict(self) -> dict:
        return {}


def recipe(name: str, out_dir: Path, overrides: list[str]):
    return read_finetune_config(REPO / "configs" / f"{name}.yaml",
                                [f"base={out_dir}", f"train.out_dir={out_dir}", *QUIET, *overrides])


def recipe_trainer(model, cfg, batches) -> Trainer:
    """The Trainer `finetune()` builds for `cfg` (minus data loading), its batches fixed."""
    return Trainer(cfg, model, FixedBatches(batches), loss_fn=lambda m, b: sft_loss(m, b, cfg.train.loss_chunk_size),
                   log=lambda *a, **k: None)


# ---------------------------------------------------------------------------------------------------- speed
def speed_shapes(vocab: int) -> dict:
    """The demo's tiny shape and the 43M shape bench_generate uses (d 512, 13 layers, GQA 8/4, d_ff 1536)."""
    return {"tiny (demo)": preset("tiny", vocab_size=vocab, max_seq_len=256),
            "43M": preset("tiny", vocab_size=vocab, max_seq_len=256, d_model=512, n_layers=13, n_heads=8,
                          n_kv_heads=4, d_ff=1536)}


def peft_model(base, directory: Path, lora_cfg):
    import transformers
    from peft import LoraConfig, get_peft_model

    from slmkit.interop.hf_export import export_hf

    export_hf(base, directory)
    hf = transformers.AutoModelForCausalLM.from_pretrained(directory, attn_implementation="sdpa",
                                                           dtype=torch.float32)
    peft_cfg = LoraConfig(r=lora_cfg.r, lora_alpha=lora_cfg.alpha, lora_dropout=lora_cfg.dropout,
                          target_modules="all-linear", use_rslora=lora_cfg.rslora, use_dora=lora_cfg.dora)
    return get_peft_model(hf, peft_cfg).train()


def peft_loss(model, batch):
    """HF's own loss (mean over targets; `shift_labels` because SFT labels are already next-token targets)."""
    return model(input_ids=batch["input_ids"], position_ids=batch["positions"], labels=batch["labels"],
                 shift_labels=batch["labels"]).loss


def peft_stepper(model, cfg, batches):
    tcfg, it = cfg.train, itertools.cycle(batches)
    optimizer = build_optimizer(model, tcfg, torch.device("cpu"))  # the same AdamW (fused on CPU) as the Trainer
    params = [p for p in model.parameters() if p.requires_grad]

    def step():
        batch = next(it)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=tcfg.precision == "bf16"):
            loss = peft_loss(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, tcfg.grad_clip, foreach=True)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())
    return step, params


def initial_losses(ours, theirs, batch) -> tuple[float, float]:
    """Both models' fp32 loss on one batch before any step (B = 0: both are the base): the same work, the same mask."""
    with torch.no_grad():
        loss, _ = sft_loss(ours, batch)
        return float(loss) / int((batch["labels"] != -100).sum()), float(peft_loss(theirs, batch))


def alternate(fns: dict, rounds: int, steps: int) -> dict[str, list[float]]:
    """Seconds per step of each callable, `steps` steps per timing, alternating (and swapping who goes first)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            start = time.perf_counter()
            for _ in range(steps):
                fns[name]()
            times[name].append((time.perf_counter() - start) / steps)
    return times


def profile_step(fn, top: int = 12) -> dict:
    """One step under torch.profiler: time per op family and the top ops by self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) or 1
    families = {"GEMM (mm/addmm/bmm/linear)": r"aten::(mm|addmm|bmm|_weight|linear|matmul)$",
                "attention (SDPA)": r"aten::_scaled_dot|flash|attention",
                "casts and copies": r"aten::(copy_|_to_copy|to|clone|contiguous)$",
                "optimizer (fused AdamW, clip)": r"aten::_fused_adamw|_foreach|norm",
                "loss (log_softmax, nll)": r"log_softmax|nll_loss|cross_entropy"}
    share = {k: 0.0 for k in families}
    for e in events:
        for k, pattern in families.items():
            if re.search(pattern, e.key):
                share[k] += e.self_cpu_time_total / total
                break
    share["everything else"] = 1 - sum(share.values())
    ops = sorted(events, key=lambda e: -e.self_cpu_time_total)[:top]
    return {"total_ms": total / 1e3, "shares": share,
            "top": [{"op": e.key, "calls": e.count, "self_ms": e.self_cpu_time_total / 1e3} for e in ops]}


def speed_pair(name: str, config, batches: list[dict], rounds: int, steps: int, profile: bool) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-finetune-speed-"))
    cfg = recipe("sft-lora", tmp / "run", [])
    torch.manual_seed(0)
    base = Decoder(config)
    theirs = peft_model(base, tmp / "hf", cfg.lora)
    torch.manual_seed(cfg.train.seed)
    make_trainable(base, cfg, resized=False)  # the recipe's adapters: all-linear, r 16, alpha 32
    ours = base.train()
    before = initial_losses(ours, theirs, batches[0])
    trainer = recipe_trainer(ours, cfg, batches)
    peft_step, peft_params = peft_stepper(theirs, cfg, batches)
    fns = {"slmkit": trainer.train_step, "peft": peft_step}
    for fn in fns.values():  # warm-up: allocator, oneDNN primitives, optimizer state
        fn(), fn()
    times = alternate(fns, rounds, steps)
    rows, seq = batches[0]["input_ids"].shape
    tokens = rows * seq
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "shape": name, "params_m": round(sum(p.numel() for p in base.parameters()) / 1e6, 1),
        "trainable_slmkit": sum(p.numel() for p in trainer.params), "trainable_peft": sum(p.numel() for p in peft_params),
        "batch": f"{rows}x{seq}", "targets_per_step": statistics.mean(int((b["labels"] != -100).sum()) for b in batches),
        "initial_loss_slmkit": before[0], "initial_loss_peft": before[1],
        "slmkit_tok_s": tokens / med["slmkit"], "peft_tok_s": tokens / med["peft"],
        "ratio_median": med["peft"] / med["slmkit"],
        "ratio_per_round": [p / s for s, p in zip(times["slmkit"], times["peft"])],
        "seconds": times, "rounds": rounds, "steps_per_timing": steps,
    }
    if profile:
        result["profile"] = {k: profile_step(fn) for k, fn in fns.items()}
    return result


# ---------------------------------------------------------------------------------------------------- memory
def _kb(field: str) -> int:
    return int(re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1))


def _release_free_memory() -> None:
    gc.collect()
    try:  # glibc keeps freed blocks in its heap; give them back so RSS shows what is still alive
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def _tensor_bytes(model) -> dict:
    """Bytes held by the model's tensors (each storage once), by dtype, and what is left of dense Linear weights."""
    seen, by_dtype = set(), {}
    for t in itertools.chain(model.parameters(), model.buffers()):
        key = t.untyped_storage().data_ptr()
        if key in seen:
            continue
        seen.add(key)
        by_dtype[str(t.dtype)] = by_dtype.get(str(t.dtype), 0) + t.untyped_storage().nbytes()
    dense = sum(m.weight.numel() * m.weight.element_size() for n, m in model.named_modules()
                if isinstance(m, torch.nn.Linear) and n.startswith("blocks."))
    tables = {id(t): t for t in (model.embed.weight, getattr(model.head, "weight", None)) if t is not None}
    return {"by_dtype_mb": {k: v / 2**20 for k, v in by_dtype.items()}, "dense_block_linear_mb": dense / 2**20,
            "embed_head_mb": sum(t.numel() * t.element_size() for t in tables.values()) / 2**20}


def memory_worker(method: str, batch: int, seq: int, steps: int) -> dict:
    """Build qwen3-283m (random weights) as `finetune()` would for `method`, run `steps` Trainer steps, report RSS."""
    _release_free_memory()
    if method == "idle":
        return {"method": "idle", "rss_mb": _kb("VmRSS") / 1024, "peak_mb": _kb("VmHWM") / 1024}
    name, extra = MEMORY_METHODS[method]
    tmp = Path(tempfile.mkdtemp(prefix="bench-finetune-memory-"))
    cfg = recipe(name, tmp / "run", [f"train.batch_size={batch}", f"train.seq_len={seq}", *extra])
    torch.manual_seed(0)
    model = Decoder(preset("qwen3-283m"))  # finetune() loads the base in float32; random weights here
    model.train()
    make_trainable(model, cfg, resized=False)  # a Qwen3 tokenizer has a chat template: no new tokens
    _release_free_memory()
    build_peak, rss_built = _kb("VmHWM"), _kb("VmRSS")
    state = _tensor_bytes(model)
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS now: the peak of training alone from here
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (batch, seq), generator=g)
    labels = torch.roll(ids, -1, 1)
    labels[:, : seq // 2] = -100  # a prompt half, as in chat SFT
    trainer = recipe_trainer(model, cfg, [{"input_ids": ids, "labels": labels}])
    start = time.perf_counter()
    losses = [trainer.train_step()["loss"] for _ in range(steps)]
    return {"method": method, "recipe": f"configs/{name}.yaml", "overrides": extra, "batch": batch, "seq": seq,
            "steps": steps, "gradient_checkpointing": bool(model.gradient_checkpointing),
            "trainable": sum(p.numel() for p in trainer.params), "params": sum(p.numel() for p in model.parameters()),
            "build_peak_mb": build_peak / 1024, "rss_built_mb": rss_built / 1024,
            "train_peak_mb": _kb("VmHWM") / 1024, "ru_maxrss_after_reset_mb":
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "seconds_per_step": (time.perf_counter() - start) / steps, "losses": losses, **state}


def measure_memory(methods: list[str], batch: int, seq: int, steps: int, threads: int) -> list[dict]:
    """One fresh process per method (and one idle process), so no peak leaks into another's."""
    out = []
    for method in ["idle", *methods]:
        proc = subprocess.run([sys.executable, __file__, "memory-worker", method, str(batch), str(seq), str(steps),
                               str(threads)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"memory worker {method!r} failed:\n{proc.stderr[-3000:]}")
        out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return out


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "memory-worker":
        method, batch, seq, steps, threads = sys.argv[2], *map(int, sys.argv[3:7])
        torch.set_num_threads(threads)
        print(json.dumps(memory_worker(method, batch, seq, steps)))
    else:
        raise SystemExit(__doc__)
