"""One uninterrupted `slm pipeline` run of the tiny recipe: every stage's output is there and real, the
deploy directory's server passes its health check and answers the OpenAI client, and the report has
every section. A second run reuses every stage."""

from __future__ import annotations

import json
import stat
import subprocess
import sys

import pytest
import yaml
from openai import AuthenticationError, OpenAI
from safetensors.torch import load_file

from slmkit.pipeline import STAGE_NAMES
from slmkit.pipeline.serving_check import free_port, start_local_server, stop_server, wait_ready
from tests.pipeline.conftest import last_plan, run_pipeline_cli

REPORT_SECTIONS = ["## Results", "## Data card", "## Model card", "## Training", "## Compute",
                   "## Evaluation against the baselines", "## Safety", "## Serving", "## Sample transcripts",
                   "## Post-mortem", "### What to change next time"]


def test_every_stage_finished(finished_run):
    state = json.loads((finished_run / "pipeline.json").read_text())
    assert list(state["stages"]) == STAGE_NAMES
    assert {name: s["status"] for name, s in state["stages"].items()} == dict.fromkeys(STAGE_NAMES, "done")
    assert set(last_plan(finished_run).values()) == {"run"}
    for name in STAGE_NAMES:
        assert (finished_run / "logs" / f"{name}.log").is_file()


def test_stage_outputs_are_real(finished_run):
    manifest = json.loads((finished_run / "data" / "manifest.json").read_text())
    assert set(manifest["sources"]) == {"generated", "local"}  # the optional, absent source was left out
    base = load_file(finished_run / "pretrain" / "model.safetensors")
    merged = load_file(finished_run / "export" / "merged" / "model.safetensors")
    assert set(base) == set(merged)
    assert any(not (base[k] == merged[k]).all() for k in base)  # SFT + DPO adapters folded in
    sft = json.loads((finished_run / "sft" / "adapter.json").read_text())
    assert sft["base"]["path"] == "pretrain"  # relative: the run root can move
    assert (finished_run / "export" / "model.gguf").read_bytes()[:4] == b"GGUF"
    assert json.loads((finished_run / "export" / "hf" / "config.json").read_text())["model_type"] == "qwen3"
    for method in ("int8", "int4"):
        assert json.loads((finished_run / "quantize" / method / "config.json").read_text())["quantization"]["method"] \
            == method
    results = json.loads((finished_run / "eval" / "results.json").read_text())
    assert [m["name"] for m in results["models"]] == ["base", "sft", "dpo", "int8", "int4"]
    assert {"text", "story_requests", "safety", "story_cloze"} <= set(results["tasks"])
    assert any(name.startswith("kneser-ney") for name in results["baselines"])


def test_report_has_every_section(finished_run):
    report = (finished_run / "report" / "report.md").read_text()
    positions = [report.index(section) for section in REPORT_SECTIONS]
    assert positions == sorted(positions)
    assert "| absent | files | left out |" in report and "no file matches" in report
    assert "| local | files |" in report and "| generated | synthetic |" in report
    html = (finished_run / "report" / "report.html").read_text()
    for plot in ("data.png", "training.png", "eval-bits_per_byte.png", "eval-safety.png"):
        assert (finished_run / "report" / plot).stat().st_size > 1000
        assert f"src='{plot}'" in html
    assert "<table>" in html and "Post-mortem" in html


def test_deploy_files_describe_the_container(finished_run):
    deploy = finished_run / "deploy"
    compose = yaml.safe_load((deploy / "compose.yaml").read_text())["services"]["slm"]
    assert compose["volumes"] == ["./model:/model:ro"] and compose["read_only"] is True
    assert compose["healthcheck"]["test"] == ["CMD", "python", "/app/healthcheck.py", "8000"]
    assert compose["environment"]["SLM_API_KEY"].startswith("${SLM_API_KEY:?")
    assert compose["ports"] == ["127.0.0.1:8000:8000"]
    assert compose["deploy"]["resources"]["limits"] == {"cpus": "2.0", "memory": "2g"}
    cuda = yaml.safe_load((deploy / "compose.cuda.yaml").read_text())["services"]["slm"]
    assert cuda["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    dockerfile = (deploy / "Dockerfile").read_text()
    assert 'CMD ["python", "/app/healthcheck.py", "8000"]' in dockerfile and "torch==" in dockerfile
    assert (deploy / "app" / "slmkit" / "serve" / "app.py").is_file()
    assert "fastapi==" in (deploy / "requirements.txt").read_text()
    assert "export SLM_API_KEY=" in (deploy / "README.md").read_text()
    for path in (deploy / "model").iterdir():  # the container's non-root user must read the mount
        assert path.stat().st_mode & stat.S_IROTH, path
    served = json.loads((deploy / "serving.json").read_text())
    assert served["api_key_enforced"] and served["load_test"]["requests"] == 4


def test_deployed_server_passes_health_check_and_openai_round_trip(finished_run, tmp_path):
    deploy = finished_run / "deploy"
    port = free_port()
    healthcheck = [sys.executable, str(deploy / "healthcheck.py"), str(port)]
    assert subprocess.run(healthcheck, capture_output=True).returncode == 1  # nothing listening yet
    with open(tmp_path / "server.log", "wb") as log:
        server = start_local_server(deploy, port, "secret-key", log)
        try:
            wait_ready(deploy, port, server, timeout=120)
            assert subprocess.run(healthcheck, capture_output=True).returncode == 0
            client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="secret-key")
            reply = client.chat.completions.create(model="model", max_tokens=5, temperature=0,
                                                   messages=[{"role": "user", "content": "Tell me a story."}])
            assert reply.usage.completion_tokens >= 1 and reply.choices[0].message.role == "assistant"
            with pytest.raises(AuthenticationError):
                OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="wrong").models.list()
        finally:
            stop_server(server)


def test_second_run_reuses_every_stage(finished_run):
    out = run_pipeline_cli(finished_run.parent.parent)
    assert out.returncode == 0, out.stderr[-2000:]
    assert set(last_plan(finished_run).values()) == {"reuse"}
    assert out.stdout.count("reused (finished, unchanged)") == len(STAGE_NAMES)
