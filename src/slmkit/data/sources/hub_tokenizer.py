"""A pretrained tokenizer (Qwen3's, GPT-2's, any Hugging Face model's) fetched once into a directory.

    download_tokenizer("Qwen/Qwen3-0.6B", "runs/qwen3-tokenizer")   # tokenizer.json + tokenizer_config.json

Recipes name it as `tokenizer.hub_id`; `slm prepare` calls this when `tokenizer.path` holds no tokenizer.
Offline, the error says which files to put where, so a copy made by hand works the same.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from slmkit.data.sources.hub import _hub_endpoint, _offline_mode, hub_reachable
from slmkit.errors import DataError, OfflineError
from slmkit.fileio import atomic_directory

REQUIRED = "tokenizer.json"
OPTIONAL = ("tokenizer_config.json", "special_tokens_map.json")  # the chat template and special tokens live here


def _offline_message(hub_id: str, path: Path, reason: str) -> str:
    return (f"cannot download the tokenizer of '{hub_id}' from the Hugging Face hub ({reason}): put its "
            f"{REQUIRED} and tokenizer_config.json (from https://huggingface.co/{hub_id}/tree/main) in {path}/, "
            "then run again")


def download_tokenizer(hub_id: str, path: str | Path) -> Path:
    """tokenizer.json (required) and the config files beside it, from the model repository `hub_id` into `path`."""
    path = Path(path)
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError
    except ImportError:
        raise DataError("tokenizer.hub_id needs the 'huggingface_hub' package: pip install 'slmkit[hf]'") from None
    if not _offline_mode() and not hub_reachable():
        raise OfflineError(_offline_message(hub_id, path, f"{_hub_endpoint()} is unreachable"))
    with atomic_directory(path) as tmp:
        try:
            shutil.copyfile(hf_hub_download(hub_id, REQUIRED), tmp / REQUIRED)
        except RepositoryNotFoundError:
            raise DataError(f"tokenizer.hub_id={hub_id}: no such model repository on the hub") from None
        except EntryNotFoundError:
            raise DataError(f"tokenizer.hub_id={hub_id}: the repository has no {REQUIRED}") from None
        except (OSError, ValueError) as e:  # connection errors, offline mode without a cached copy
            raise OfflineError(_offline_message(hub_id, path, " ".join(str(e).split())[:160])) from None
        for name in OPTIONAL:
            try:
                shutil.copyfile(hf_hub_download(hub_id, name), tmp / name)
            except (EntryNotFoundError, OSError, ValueError):
                pass  # a tokenizer.json alone still encodes; the config adds the chat template
    return path
