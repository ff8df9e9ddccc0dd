"""A LoRA fine-tune under torchrun (2 CPU processes, DDP over gloo) trains what one process trains on
the same global batch, writes adapter-only checkpoints mid-run, prints its summary once, and FSDP is
refused for adapters with a one-line reason."""

import json
import subprocess
import sys

import torch

from slmkit.finetune.adapter import read_adapter_tensors
from tests.finetune.tiny_workspace import make_workspace
from tests.train.conftest import REPO, subprocess_env


def _finetune(root, out, rows, *launcher_and_overrides, processes=1):
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
                if processes > 1 else [sys.executable])
    command = [*launcher, "-m", "slmkit", "finetune", "configs/sft-lora.yaml", f"base={root / 'base'}",
               f"data.train={root / 'sft.jsonl'}", "data.eval=null", "data.eval_fraction=0.2",
               f"train.out_dir={out}", "train.max_steps=4", "train.max_minutes=null", "train.time_schedule=false",
               "train.warmup_steps=1", f"train.batch_size={rows}", "train.seq_len=256", "train.eval_every=0",
               "train.checkpoint_every=2", "train.keep_last=2", "train.sample_tokens=0", "train.plots=false",
               "train.tensorboard=false", "train.precision=fp32", "train.log_every=1", "train.backend=gloo",
               *launcher_and_overrides, "--no-progress"]
    return subprocess.run(command, env=subprocess_env(), capture_output=True, text=True, timeout=240, cwd=REPO)


def _losses(run) -> list[float]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if r["kind"] == "train"]


def test_ddp_lora_matches_one_process(tmp_path):
    root = make_workspace(tmp_path)
    one = _finetune(root, tmp_path / "one", 4)
    assert one.returncode == 0, one.stderr[-3000:]
    two = _finetune(root, tmp_path / "two", 2, "train.parallel=ddp", processes=2)
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    assert two.stdout.count("finished at step 4") == 1  # rank 0 alone prints the summary
    assert len(_losses(tmp_path / "two")) == 4
    assert all(abs(a - b) < 1e-4 for a, b in zip(_losses(tmp_path / "one"), _losses(tmp_path / "two")))
    checkpoints = sorted(p.name for p in (tmp_path / "two" / "checkpoints").iterdir())
    assert checkpoints == ["step_00000002", "step_00000004"]
    assert (tmp_path / "two" / "checkpoints" / "step_00000002" / "adapter.safetensors").is_file()
    a, b = read_adapter_tensors(tmp_path / "one"), read_adapter_tensors(tmp_path / "two")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-4, msg=name)
    fsdp = _finetune(root, tmp_path / "fsdp", 2, "train.parallel=fsdp", processes=2)
    assert fsdp.returncode != 0 and "train.parallel=fsdp is not supported for LoRA" in fsdp.stderr
