"""Open configured sources, interleave them with weights, and assign documents to train/val by hash.

The split depends only on a document's (normalised) text, so it is the same on every run, with
any number of workers, and a document never lands in both splits.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from collections.abc import Iterator

from slmkit.data.config import MixConfig, SourceConfig
from slmkit.data.sources.hub import read_hub_dataset
from slmkit.data.sources.local_files import read_files
from slmkit.data.sources.synthetic import generate_stories
from slmkit.errors import ConfigError, DataError


def open_source(src: SourceConfig) -> Iterator[str]:
    """The documents of one source, at most `src.limit` of them."""
    if src.kind == "synthetic":
        return generate_stories(src.limit, seed=src.seed)
    if src.kind == "files":
        docs = read_files(src.paths, delimiter=src.delimiter, text_field=src.text_field)
    else:
        docs = read_hub_dataset(src.hub_repo, src.hub_split, src.text_field, src.limit, src.cache_dir, src.hub_config)
    return docs if src.limit is None else itertools.islice(docs, src.limit)


def check_sources(sources: dict[str, SourceConfig], mix: MixConfig) -> None:
    """Open every source and read its first document, so that a missing file, an unreachable hub or
    an empty input fails before `slm prepare` creates anything."""
    _check_bounded(sources, mix)
    found = False
    for src in sources.values():
        if src.weight <= 0:
            continue
        docs = iter(open_source(src))
        try:
            found = next(docs, None) is not None or found
        finally:
            if hasattr(docs, "close"):
                docs.close()
    if not found:
        raise DataError("the sources gave no documents: check the paths, globs and limits in the config")


def _check_bounded(sources: dict[str, SourceConfig], mix: MixConfig) -> None:
    endless = [n for n, s in sources.items() if s.kind == "synthetic" and s.limit is None and s.weight > 0]
    if not endless:
        return
    if mix.stop == "all_exhausted" or len(endless) == len([s for s in sources.values() if s.weight > 0]):
        raise ConfigError(f"synthetic source '{endless[0]}' never ends: set sources.{endless[0]}.limit=N")


def mix_sources(sources: dict[str, SourceConfig], mix: MixConfig) -> Iterator[tuple[str, str]]:
    """(source name, document) pairs; each next document comes from a source drawn with its weight."""
    _check_bounded(sources, mix)
    names = [n for n, s in sources.items() if s.weight > 0]
    if not names:
        raise ConfigError("every source has weight 0: nothing to prepare")
    if len(names) == 1:  # no draw needed
        yield from ((names[0], doc) for doc in open_source(sources[names[0]]))
        return
    iterators = {n: open_source(sources[n]) for n in names}
    rng = random.Random(mix.seed)
    while names:
        name = rng.choices(names, weights=[sources[n].weight for n in names])[0]
        try:
            yield name, next(iterators[name])
        except StopIteration:
            if mix.stop == "first_exhausted":
                return
            names.remove(name)


def document_hash(text: str) -> bytes:
    """16 bytes identifying a normalised document: used for the split and for exact dedup."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def split_of(digest: bytes, val_fraction: float) -> str:
    """'val' for a fixed `val_fraction` of all possible hashes, else 'train'."""
    position = int.from_bytes(digest[8:16], "little") / 2**64
    return "val" if position < val_fraction else "train"
