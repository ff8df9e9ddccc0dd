"""Prometheus metrics in the text exposition format, without a client library.

    metrics = Metrics()
    metrics.requests.inc(endpoint="/v1/chat/completions", status="200")
    metrics.ttft.observe(0.12)
    text = metrics.render()         # served at GET /metrics

Counters and histograms are updated from the event loop and the scheduler thread, so each metric
takes a small lock.
"""

from __future__ import annotations

import math
import threading

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096)


def _labels(labels: dict) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(str(v))}"' for k, v in sorted(labels.items()))
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(x: float) -> str:
    if x == math.inf:
        return "+Inf"
    return repr(float(x)) if not float(x).is_integer() else str(int(x))


class Counter:
    kind = "counter"

    def __init__(self, name: str, help: str):
        self.name, self.help = name, help
        self._values: dict[tuple, float] = {}
        self._lock = threading.Lock()

    def inc(self, amount: float = 1.0, **labels) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels) -> float:
        return self._values.get(tuple(sorted(labels.items())), 0.0)

    def samples(self):
        with self._lock:
            items = list(self._values.items())
        if not items:
            items = [((), 0.0)]
        return [(self.name + ("_total" if not self.name.endswith("_total") else ""), dict(k), v) for k, v in items]


class Gauge:
    kind = "gauge"

    def __init__(self, name: str, help: str, read=None):
        self.name, self.help, self._read = name, help, read
        self._value = 0.0

    def set(self, value: float) -> None:
        self._value = value

    def value(self) -> float:
        return float(self._read()) if self._read else self._value

    def samples(self):
        return [(self.name, {}, self.value())]


class Histogram:
    kind = "histogram"

    def __init__(self, name: str, help: str, buckets=LATENCY_BUCKETS):
        self.name, self.help = name, help
        self.buckets = tuple(buckets) + (math.inf,)
        self._counts: dict[tuple, list[int]] = {}
        self._sums: dict[tuple, float] = {}
        self._lock = threading.Lock()

    def observe(self, value: float, **labels) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            counts = self._counts.setdefault(key, [0] * len(self.buckets))
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    counts[i] += 1
            self._sums[key] = self._sums.get(key, 0.0) + value

    def count(self, **labels) -> int:
        counts = self._counts.get(tuple(sorted(labels.items())))
        return counts[-1] if counts else 0

    def samples(self):
        with self._lock:
            keys = list(self._counts) or [()]
            out = []
            for key in keys:
                counts = self._counts.get(key, [0] * len(self.buckets))
                labels = dict(key)
                for bound, n in zip(self.buckets, counts):
                    out.append((self.name + "_bucket", {**labels, "le": _number(bound)}, n))
                out.append((self.name + "_sum", labels, self._sums.get(key, 0.0)))
                out.append((self.name + "_count", labels, counts[-1]))
        return out


class Metrics:
    """Everything the server reports. `queue_depth` and `running` read the scheduler live."""

    def __init__(self, queue_depth=None, running=None):
        self.requests = Counter("slm_requests_total", "HTTP requests by endpoint and status code")
        self.prompt_tokens = Counter("slm_prompt_tokens_total", "prompt tokens processed")
        self.generated_tokens = Counter("slm_generated_tokens_total", "tokens generated")
        self.finished = Counter("slm_sequences_finished_total", "generated sequences by finish reason")
        self.latency = Histogram("slm_request_latency_seconds", "time from request to last byte, by endpoint")
        self.ttft = Histogram("slm_time_to_first_token_seconds", "time from request to first generated token")
        self.queue_wait = Histogram("slm_queue_wait_seconds", "time a sequence waits before its prefill")
        self.step_time = Histogram("slm_decode_step_seconds", "one batched decode step",
                                   buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0))
        self.batch_size = Histogram("slm_decode_batch_size", "sequences in a decode step",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128))
        self.completion_tokens = Histogram("slm_completion_tokens", "tokens generated per sequence",
                                           buckets=TOKEN_BUCKETS)
        self.queue_depth = Gauge("slm_queue_depth", "sequences waiting for a batch slot", queue_depth)
        self.running = Gauge("slm_running_sequences", "sequences in the decode batch", running)
        self._all = [self.requests, self.prompt_tokens, self.generated_tokens, self.finished, self.latency,
                     self.ttft, self.queue_wait, self.step_time, self.batch_size, self.completion_tokens,
                     self.queue_depth, self.running]

    def render(self) -> str:
        lines = []
        for metric in self._all:
            base = metric.name if metric.kind != "counter" else metric.name.removesuffix("_total")
            lines.append(f"# HELP {base} {metric.help}")
            lines.append(f"# TYPE {base} {metric.kind}")
            for name, labels, value in metric.samples():
                lines.append(f"{name}{_labels(labels)} {_number(value)}")
        return "\n".join(lines) + "\n"
