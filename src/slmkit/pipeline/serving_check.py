"""Start the deploy directory's server the way its files say (serve-local.sh), wait for its health check,
chat with it, and time a short load test; the report quotes the numbers.

Plain HTTP with the standard library, so the check needs nothing the server does not.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from slmkit.errors import SlmError

READY_TIMEOUT_S = 180.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_local_server(deploy: Path, port: int, api_key: str, log_file) -> subprocess.Popen:
    env = {**os.environ, "SLM_API_KEY": api_key, "PYTHON": sys.executable}
    return subprocess.Popen(["sh", str(deploy / "serve-local.sh"), str(port)], env=env, stdout=log_file,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def wait_ready(deploy: Path, port: int, server: subprocess.Popen, timeout: float = READY_TIMEOUT_S) -> float:
    """Seconds until deploy/healthcheck.py (the container's health check) passes."""
    began = time.time()
    while time.time() - began < timeout:
        if server.poll() is not None:
            raise SlmError(f"the deployed server exited with {server.returncode} before it was ready")
        check = subprocess.run([sys.executable, str(deploy / "healthcheck.py"), str(port)], capture_output=True)
        if check.returncode == 0:
            return time.time() - began
        time.sleep(0.5)
    raise SlmError(f"the deployed server was not ready after {timeout:.0f} s")


def stop_server(server: subprocess.Popen) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def chat(port: int, api_key: str, prompt: str, max_tokens: int) -> dict:
    """One /v1/chat/completions request (greedy); the reply, its token count and its latency."""
    body = json.dumps({"model": "model", "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
                       "temperature": 0}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=body, method="POST",
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"})
    began = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            reply = json.loads(response.read())
    except urllib.error.HTTPError as e:
        raise SlmError(f"the deployed server answered {e.code}: {e.read()[:200]!r}") from None
    return {"prompt": prompt, "reply": reply["choices"][0]["message"]["content"],
            "completion_tokens": reply["usage"]["completion_tokens"], "latency_s": time.perf_counter() - began}


def load_test(port: int, api_key: str, prompts: list[str], requests: int, concurrency: int, max_tokens: int) -> dict:
    began = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(lambda i: chat(port, api_key, prompts[i % len(prompts)], max_tokens), range(requests)))
    wall = time.perf_counter() - began
    latencies = sorted(r["latency_s"] for r in results)
    tokens = sum(r["completion_tokens"] for r in results)
    return {"requests": requests, "concurrency": concurrency, "max_tokens": max_tokens, "wall_s": wall,
            "latency_p50_s": statistics.median(latencies),
            "latency_p95_s": latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))],
            "completion_tokens": tokens, "tokens_per_s": tokens / wall, "requests_per_s": requests / wall}


def check_served_model(deploy: Path, transcripts: list[str], requests: int, concurrency: int, max_tokens: int) -> dict:
    """Serve deploy/model locally, chat with it and load-test it; the measurements as a dict."""
    port, api_key = free_port(), secrets.token_hex(8)
    with open(deploy.parent / "logs" / "deploy-server.log", "wb") as log_file:
        server = start_local_server(deploy, port, api_key, log_file)
        try:
            ready_s = wait_ready(deploy, port, server)
            _check_key_required(port)
            conversations = [chat(port, api_key, prompt, max_tokens) for prompt in transcripts]
            measured = load_test(port, api_key, transcripts, requests, concurrency, max_tokens)
        finally:
            stop_server(server)
    return {"ready_s": ready_s, "api_key_enforced": True, "transcripts": conversations, "load_test": measured}


def _check_key_required(port: int) -> None:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models")
    try:
        urllib.request.urlopen(request, timeout=10)
    except urllib.error.HTTPError as e:
        if e.code == 401:
            return
    raise SlmError("the deployed server answered /v1/models without the API key")
