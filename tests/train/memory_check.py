"""Run under torchrun (tests/train/test_memory_estimate.py does): the peak memory one training step adds on each
rank, measured from the kernel's resident-set counters, written to OUT/rank_N.json.

How it measures, on CPU: VmRSS (resident memory) is read before the model is built; after the Trainer is built
(model split over the mesh, optimizer made) and has taken one step (which makes the AdamW moments, and infers
the pipeline's shapes), the kernel's peak counter VmHWM is reset (writing "5" to /proc/self/clear_refs), two more
optimizer steps run, and the peak is read again: peak - baseline is what the
weights, gradients, AdamW moments, activations and logits of a step took at their highest. glibc's malloc is
pinned to give every block over 64 KiB its own mapping (MALLOC_MMAP_THRESHOLD_, set by the test), so freed
tensors leave the resident set at once instead of lingering in the heap. The build itself briefly holds the
full model on every rank (each rank builds it from the seed before sharding), which this does not count.
"""

import gc
import json
import sys
from pathlib import Path

from slmkit.train import Trainer
from slmkit.train.config import load_run_config
from slmkit.train.distributed import setup_distributed
from slmkit.train.run import build_loaders, build_model


def kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def main(recipe: str, out_dir: str) -> int:
    cfg = load_run_config(recipe)
    dist, device = setup_distributed(cfg.train)
    train_data, _ = build_loaders(cfg, cfg.data.out_dir, None, dist.dp_size, eval_alone=True)
    gc.collect()
    baseline = kib("VmRSS")
    trainer = Trainer(cfg, build_model(cfg), train_data, dist=dist, device=device, log=lambda *a, **k: None)
    trainer.train_step()  # the first step also infers the pipeline's shapes and creates the AdamW moments
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    for _ in range(2):
        trainer.train_step()
    peak = kib("VmHWM")
    Path(out_dir, f"rank_{dist.rank}.json").write_text(json.dumps({"bytes": (peak - baseline) * 1024}))
    dist.barrier()
    dist.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
