"""The two stages that are not an `slm` verb: deploy (container files + a served check) and report."""

from __future__ import annotations

import json
import time
from pathlib import Path

from slmkit.fileio import atomic_directory, write_json_atomic
from slmkit.pipeline.config import PipelineConfig
from slmkit.pipeline.deploy_files import write_deploy_files
from slmkit.pipeline.report import write_pipeline_report
from slmkit.pipeline.serving_check import check_served_model
from slmkit.pipeline.stages import served_source


def run_action(name: str, cfg: PipelineConfig, root: Path, log_path: Path, log) -> None:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as log_file:
        def say(text: str) -> None:
            log(f"  {text}")
            log_file.write(text + "\n")
            log_file.flush()

        {"deploy": deploy_stage, "report": report_stage}[name](cfg, root, say)


def deploy_stage(cfg: PipelineConfig, root: Path, say) -> None:
    d = cfg.deploy
    with atomic_directory(root / "deploy") as out:
        write_deploy_files(out, root / served_source(cfg), d.port, d.cpus, d.memory, d.max_batch, d.torch)
        say(f"wrote {root / 'deploy'}: model ({served_source(cfg)}), Dockerfile(.cuda), compose(.cuda).yaml, "
            "serve-local.sh, healthcheck.py")
    say("serving it locally (serve-local.sh) for the health check, transcripts and a load test")
    began = time.time()
    measured = check_served_model(root / "deploy", d.transcripts, d.load_test_requests, d.load_test_concurrency,
                                  d.load_test_max_tokens)
    measured.update(model=d.model, source=served_source(cfg), seconds=time.time() - began)
    write_json_atomic(root / "deploy" / "serving.json", measured)
    lt = measured["load_test"]
    say(f"ready in {measured['ready_s']:.1f} s; {lt['requests']} requests x {lt['max_tokens']} tokens at concurrency "
        f"{lt['concurrency']}: p50 {lt['latency_p50_s']:.2f} s, {lt['tokens_per_s']:.0f} tokens/s")
    for t in measured["transcripts"]:
        say(f"user: {t['prompt']}\n  model: {json.dumps(t['reply'])[:200]}")


def report_stage(cfg: PipelineConfig, root: Path, say) -> None:
    paths = write_pipeline_report(cfg, root)
    say("wrote " + ", ".join(str(p) for p in paths))
