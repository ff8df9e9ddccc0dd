"""Raw ASGI middleware: a bounded request body, and per-request metrics (status and latency).

Raw ASGI rather than Starlette's BaseHTTPMiddleware so streamed responses pass through untouched
and latency is measured to the last byte sent.
"""

from __future__ import annotations

import time

from slmkit.serve.errors import error_bytes
from slmkit.serve.metrics import Metrics

# Paths reported as themselves in metrics; everything else is "other" (bounded label values).
KNOWN_PATHS = {"/", "/health", "/ready", "/metrics", "/v1/models", "/v1/completions", "/v1/chat/completions",
               "/tokenizer_info", "/tokenize", "/detokenize", "/v1/tokenizer_info", "/v1/tokenize", "/v1/detokenize"}


async def _send_error(send, status: int, message: str, code: str) -> None:
    body = error_bytes(status, message, code)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Reads at most `max_bytes` of a request body, then hands the app a replay of it; more -> 413."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        message = f"request body exceeds this server's limit of {self.max_bytes} bytes"
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await _send_error(send, 413, message, "body_too_large")
        chunks, size = [], 0
        while True:
            event = await receive()
            if event["type"] == "http.disconnect":
                return
            chunk = event.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return await _send_error(send, 413, message, "body_too_large")
            chunks.append(chunk)
            if not event.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the client to disconnect

        return await self.app(scope, replay, send)


class RequestMetrics:
    """Counts requests by path and status, and observes latency to the end of the response."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        path = scope["path"] if scope["path"] in KNOWN_PATHS else "other"
        status = 500

        async def send_and_watch(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            self.metrics.requests.inc(endpoint=path, status=str(status))
            self.metrics.latency.observe(time.perf_counter() - start, endpoint=path)
