"""JSON over HTTP for the evaluation clients (an endpoint under test, a judge), standard library only.

    client = JsonHttpClient(api_key="k", concurrency=4, max_retries=3, timeout=120, retry_backoff=0.5)
    client._request("POST", "http://127.0.0.1:8000/v1/chat/completions", {...})   # -> the JSON object
    client._map(fn, items)                                # fn over items, `concurrency` at once, in order

Connection errors, 429 and 5xx are retried with exponential backoff (honouring Retry-After, each wait at
most MAX_BACKOFF); any other 4xx is an `EndpointError` at once, one line with the server's own message.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from slmkit.errors import SlmError

MAX_BACKOFF = 30.0  # seconds; cap on one wait between retries
ERROR_CHARS = 300  # the server's message is cut to this in an error line


class EndpointError(SlmError):
    """The server refused a request (`status` its HTTP code), answered nonsense, or could not be reached."""

    def __init__(self, message: str, status: int | None = None, server_message: str = ""):
        super().__init__(message)
        self.status, self.server_message = status, server_message

    @property
    def missing_route(self) -> bool:
        """A 404 for the path itself, not for the model named in the request."""
        return self.status == 404 and "model" not in self.server_message.lower()


class JsonHttpClient:
    def __init__(self, api_key: str | None = None, concurrency: int = 4, max_retries: int = 3,
                 timeout: float = 120, retry_backoff: float = 0.5):
        self.api_key = api_key
        self.concurrency, self.max_retries = max(1, concurrency), max(0, max_retries)
        self.timeout, self.retry_backoff = timeout, retry_backoff

    def _request(self, method: str, url: str, body: dict | None) -> dict:
        """One JSON call, retried on connection errors, 429 and 5xx with exponential backoff."""
        data = json.dumps(body).encode("utf-8") if body is not None else None
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        failure = ""
        for attempt in range(self.max_retries + 1):
            wait = self.retry_backoff * 2 ** attempt
            try:
                with urllib.request.urlopen(urllib.request.Request(url, data, headers, method=method),
                                            timeout=self.timeout) as response:
                    raw = response.read()
            except urllib.error.HTTPError as e:
                message = _server_message(e)
                failure = f"HTTP {e.code}: {message}"
                if e.code != 429 and e.code < 500:
                    raise EndpointError(f"{method} {url} failed: {failure}", e.code, message) from None
                wait = max(wait, _retry_after(e))
            except (OSError, http.client.HTTPException) as e:  # refused, reset, timed out, cut short
                failure = f"{type(e).__name__}: {getattr(e, 'reason', None) or e}"
            else:
                return _json_object(raw, method, url)
            if attempt < self.max_retries:
                time.sleep(min(MAX_BACKOFF, wait))
        raise EndpointError(f"{method} {url} failed after {self.max_retries + 1} attempts: {one_line(failure)}")

    def _map(self, fn: Callable, items: list) -> list:
        """fn over items with up to `concurrency` requests in flight, results in order."""
        if len(items) <= 1 or self.concurrency == 1:
            return [fn(item) for item in items]
        with ThreadPoolExecutor(min(self.concurrency, len(items))) as pool:
            futures = [pool.submit(fn, item) for item in items]
            try:
                return [f.result() for f in futures]
            except BaseException:
                for f in futures:  # the first failure ends the call; queued requests are not sent
                    f.cancel()
                raise


def _server_message(error: urllib.error.HTTPError) -> str:
    """The server's own words: OpenAI's {"error": {"message"}}, FastAPI's {"detail"}, or the raw body."""
    try:
        text = error.read().decode("utf-8", errors="replace")
    except OSError:
        text = ""
    try:
        obj = json.loads(text)
        inner = obj.get("error", obj) if isinstance(obj, dict) else obj
        message = (inner.get("message") or inner.get("detail")) if isinstance(inner, dict) else inner
        text = message if isinstance(message, str) else json.dumps(message if message is not None else obj)
    except (ValueError, AttributeError):
        pass
    return one_line(text) or str(error.reason)


def _retry_after(error: urllib.error.HTTPError) -> float:
    try:
        return float(error.headers.get("Retry-After") or 0)
    except ValueError:  # an HTTP date: use the backoff
        return 0.0


def _json_object(raw: bytes, method: str, url: str) -> dict:
    try:
        out = json.loads(raw)
    except ValueError:
        raise EndpointError(f"{method} {url} answered with something other than JSON: "
                            f"{one_line(raw.decode('utf-8', errors='replace'))}") from None
    if not isinstance(out, dict):
        raise EndpointError(f"{method} {url} answered with JSON that is not an object")
    return out


def one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= ERROR_CHARS else text[:ERROR_CHARS - 3] + "..."
