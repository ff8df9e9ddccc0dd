"""TinyStories (or another text dataset) from the Hugging Face hub, cached by `datasets`.

Offline, `load_dataset` retries for half a minute before failing; we probe the hub first and
raise a one-line `OfflineError` that says how to use local files instead.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from urllib.parse import urlparse

from slmkit.errors import DataError, OfflineError

PROBE_TIMEOUT_S = 5.0


def _hub_endpoint() -> str:
    try:
        from huggingface_hub import constants

        return constants.ENDPOINT
    except ImportError:
        return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def _offline_mode() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def hub_reachable(endpoint: str | None = None, timeout: float = PROBE_TIMEOUT_S) -> bool:
    url = urlparse(endpoint or _hub_endpoint())
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def _offline_error(repo: str, reason: str) -> OfflineError:
    return OfflineError(
        f"cannot download '{repo}' from the Hugging Face hub ({reason}); offline, use local files instead: "
        f"sources.NAME.kind=files sources.NAME.paths=[path/to/TinyStories-train.txt] "
        f"(or set HF_HUB_OFFLINE=1 to read a copy cached earlier)"
    )


def read_hub_dataset(
    repo: str = "roneneldan/TinyStories",
    split: str = "train",
    text_field: str = "text",
    limit: int | None = None,
    cache_dir: str | None = None,
    config: str | None = None,
) -> Iterator[str]:
    """Documents of one split of a hub dataset; downloaded once, then read from the local cache."""
    try:
        from datasets import load_dataset
    except ImportError:
        raise DataError("a hub source needs the 'datasets' package: pip install 'slmkit[hf]'") from None
    if not _offline_mode() and not hub_reachable():
        raise _offline_error(repo, f"{_hub_endpoint()} is unreachable")
    try:
        dataset = load_dataset(repo, config, split=split, cache_dir=cache_dir)
    except (ConnectionError, TimeoutError) as e:
        raise _offline_error(repo, " ".join(str(e).split())[:200]) from None
    except ValueError as e:  # e.g. an unknown split name
        raise DataError(f"{repo}: {' '.join(str(e).split())[:300]}") from None
    if text_field not in dataset.column_names:
        raise DataError(f"{repo}: no '{text_field}' column (columns: {', '.join(dataset.column_names)})")
    count = len(dataset) if limit is None else min(limit, len(dataset))
    for start in range(0, count, 1024):
        for text in dataset[start:min(start + 1024, count)][text_field]:
            if isinstance(text, str) and text.strip():
                yield text
