"""ROOT/deploy/: the served model and everything a container needs to serve it.

    deploy/model/             the model directory (read-only mount at /model)
    deploy/app/slmkit/        this slmkit's source (the image runs the same code that made the model)
    deploy/requirements.txt   its dependencies, pinned to the versions that made the model
    deploy/Dockerfile         CPU image;  Dockerfile.cuda: the CUDA one
    deploy/compose.yaml       health check, resource limits, API key from $SLM_API_KEY, read-only model
    deploy/compose.cuda.yaml  the same on one GPU
    deploy/healthcheck.py     the health check (the container's, and the one a local run uses)
    deploy/serve-local.sh     the same server without a container (127.0.0.1 only)
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
from pathlib import Path

import slmkit
from slmkit.fileio import write_text_atomic

SERVE_REQUIREMENTS = ("numpy", "regex", "pyyaml", "tqdm", "safetensors", "tokenizers", "jinja2", "fastapi", "uvicorn")

HEALTHCHECK = '''"""Exit 0 when the slmkit server answers /ready (model loaded, scheduler running), else 1."""
import sys
import urllib.request

port = sys.argv[1] if len(sys.argv) > 1 else "8000"
try:
    urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=4)
except Exception as e:
    print(f"not ready: {e}", file=sys.stderr)
    sys.exit(1)
'''

DOCKERFILE = """# The capstone's server, CPU image:  docker compose up   (from this directory; see README.md)
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \\
    PYTHONPATH=/app HOME=/tmp
WORKDIR /app
# CPU wheels of torch first (the default index would pull CUDA wheels, several GB).
RUN pip install --index-url https://download.pytorch.org/whl/cpu "{torch}"
COPY requirements.txt ./
RUN pip install -r requirements.txt
COPY app/ /app/
COPY healthcheck.py /app/healthcheck.py
RUN useradd --create-home --uid 10001 slm
USER slm
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 CMD ["python", "/app/healthcheck.py", "8000"]
# PID 1 gets SIGTERM from `docker stop`: in-flight requests finish (8 s), then it exits.
ENTRYPOINT ["python", "-m", "slmkit", "serve"]
CMD ["/model", "--host", "0.0.0.0", "--port", "8000", "--max-batch", "{max_batch}", "--shutdown-timeout", "8"]
"""

DOCKERFILE_CUDA = DOCKERFILE.replace("CPU image", "CUDA image (NVIDIA Container Toolkit on the host)").replace(
    "FROM python:3.11-slim", "FROM nvidia/cuda:12.6.3-runtime-ubuntu24.04\nRUN apt-get update && apt-get install -y "
    "--no-install-recommends python3 python3-pip python-is-python3 && rm -rf /var/lib/apt/lists/*\n"
    "ENV PIP_BREAK_SYSTEM_PACKAGES=1").replace(
    "# CPU wheels of torch first (the default index would pull CUDA wheels, several GB).\n"
    "RUN pip install --index-url https://download.pytorch.org/whl/cpu", "RUN pip install --index-url "
    "https://download.pytorch.org/whl/cu126").replace("RUN useradd --create-home --uid 10001 slm",
                                                      "RUN useradd --create-home --uid 10001 slm || true")

COMPOSE = """# docker compose up   (from this directory). Clients send: Authorization: Bearer $SLM_API_KEY
services:
  slm:
    build: {{context: ., dockerfile: {dockerfile}}}
    image: slmkit-capstone{tag}:latest
    ports: ["127.0.0.1:{port}:8000"]   # this machine only; "{port}:8000" to publish it
    environment:
      SLM_API_KEY: ${{SLM_API_KEY:?set SLM_API_KEY to the key clients must send}}
    volumes: ["./model:/model:ro"]
    read_only: true
    tmpfs: [/tmp]
    restart: unless-stopped
    stop_grace_period: 10s
    healthcheck:
      test: ["CMD", "python", "/app/healthcheck.py", "8000"]
      interval: 15s
      timeout: 5s
      start_period: 60s
      retries: 3
    deploy:
      resources:
        limits: {{cpus: "{cpus}", memory: {memory}}}{gpu}
"""

GPU_RESERVATION = """
        reservations:
          devices: [{driver: nvidia, count: 1, capabilities: [gpu]}]"""

SERVE_LOCAL = """#!/usr/bin/env sh
# The container's server without a container: 127.0.0.1 only; the key from $SLM_API_KEY when set.
#   sh serve-local.sh [PORT]          then: python healthcheck.py [PORT]
cd "$(dirname "$0")"
PYTHONPATH="$PWD/app${{PYTHONPATH:+:$PYTHONPATH}}" exec "${{PYTHON:-python3}}" -m slmkit serve model \\
    --host 127.0.0.1 --port "${{1:-{port}}}" --max-batch {max_batch} --shutdown-timeout 8
"""


DEPLOY_README = """# The served capstone model

`model/` is the run's `{source}` model. Serve it in a container (needs Docker with compose v2):

```bash
export SLM_API_KEY=$(openssl rand -hex 16)        # clients send: Authorization: Bearer $SLM_API_KEY
docker compose up --build -d                      # CPU image; health: docker compose ps
docker compose -f compose.cuda.yaml up --build -d # one NVIDIA GPU (NVIDIA Container Toolkit on the host)
```

or without a container (127.0.0.1 only):

```bash
SLM_API_KEY=secret sh serve-local.sh {port}          # then: python healthcheck.py {port}
```

The API is OpenAI's (chat, completions, streaming), with a playground at http://127.0.0.1:{port}/:

```python
from openai import OpenAI
client = OpenAI(base_url="http://127.0.0.1:{port}/v1", api_key="secret")
print(client.chat.completions.create(model="model", messages=[{{"role": "user", "content": "Tell me a story."}}])
      .choices[0].message.content)
```

The container runs as a non-root user with a read-only root filesystem, the model mounted read-only at /model,
{cpus} CPUs and {memory} of memory at most (compose.yaml); `docker stop` lets in-flight requests finish.
"""


def torch_requirement(spec: str) -> str:
    """'torch' (the recipe's default) -> the installed version, e.g. 'torch==2.13.0' (local tags such as
    +cpu dropped: the index in the Dockerfile picks the build)."""
    if spec != "torch":
        return spec
    version = re.sub(r"\+.*$", "", importlib.metadata.version("torch"))
    return f"torch=={version}"


def requirements() -> str:
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in SERVE_REQUIREMENTS]
    return "# what slmkit serve needs, at the versions that made this model (torch: see the Dockerfile)\n" + \
        "\n".join(pins) + "\n"


def write_deploy_files(out: Path, model_dir: Path, port: int, cpus: float, memory: str, max_batch: int,
                       torch_spec: str) -> None:
    """Fill `out` (a fresh directory) with the model, slmkit's source and the container files."""
    shutil.copytree(model_dir, out / "model", ignore=shutil.ignore_patterns("checkpoints", "tensorboard", "*.tmp*"))
    package = Path(slmkit.__file__).resolve().parent
    shutil.copytree(package, out / "app" / "slmkit", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    torch = torch_requirement(torch_spec)
    files = {
        "requirements.txt": requirements(),
        "healthcheck.py": HEALTHCHECK,
        "Dockerfile": DOCKERFILE.format(torch=torch, max_batch=max_batch),
        "Dockerfile.cuda": DOCKERFILE_CUDA.format(torch=torch, max_batch=max_batch),
        "compose.yaml": COMPOSE.format(dockerfile="Dockerfile", tag="", port=port, cpus=cpus, memory=memory, gpu=""),
        "compose.cuda.yaml": COMPOSE.format(dockerfile="Dockerfile.cuda", tag="-cuda", port=port, cpus=cpus,
                                            memory=memory, gpu=GPU_RESERVATION),
        "serve-local.sh": SERVE_LOCAL.format(port=port, max_batch=max_batch),
        ".dockerignore": "**/__pycache__\nserving.json\n",
        "README.md": DEPLOY_README.format(source=model_dir.name, port=port, cpus=cpus, memory=memory),
    }
    for name, text in files.items():
        write_text_atomic(out / name, text)
    _readable_by_all(out)
    (out / "serve-local.sh").chmod(0o755)


def _readable_by_all(directory: Path) -> None:
    """The image runs as a non-root user and mounts model/ read-only: everything must be world-readable
    (atomic writes and temporary directories are created owner-only)."""
    directory.chmod(0o755)
    for path in directory.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
