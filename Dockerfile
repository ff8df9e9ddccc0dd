# slmkit server, CPU only:  docker build -t slmkit-serve .
#   docker run --rm -p 8000:8000 -v "$PWD/runs/demo:/model:ro" slmkit-serve
#   docker run --rm -p 8000:8000 -v "$PWD/runs/demo:/model:ro" -e SLM_API_KEY=secret slmkit-serve
# The model directory (a run, a quantized checkpoint or a Hugging Face folder) is mounted at /model.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# CPU wheels of torch first (the default index would pull CUDA wheels, several GB).
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch>=2.5"
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install ".[serve]"

RUN useradd --create-home --uid 10001 slm
USER slm

EXPOSE 8000
# /ready: the model is loaded and the scheduler runs (503 while shutting down).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=4)"]

# Inside the container the server must listen on all interfaces for -p to reach it. Exec form: the
# server is PID 1 and receives SIGTERM from `docker stop`, finishes in-flight requests (up to 8 s, within
# Docker's default 10 s grace period; raise both with --shutdown-timeout and `docker stop -t`), and exits.
ENTRYPOINT ["slm", "serve"]
CMD ["/model", "--host", "0.0.0.0", "--port", "8000", "--shutdown-timeout", "8"]
