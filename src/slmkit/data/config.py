"""`DataConfig`: everything `slm prepare` needs, as typed dataclasses (loaded with slmkit.config).

Sources are a mapping name -> SourceConfig (not a list) so that dotted overrides can reach
them: `slm prepare configs/synthetic.yaml sources.stories.limit=1000`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from slmkit.config import from_dict
from slmkit.errors import ConfigError


@dataclass
class SourceConfig:
    """One text source. `kind` picks the reader; the other fields apply to some kinds only."""

    kind: Literal["tinystories", "hub", "files", "synthetic"] = "synthetic"  # hub: any hub dataset (hub_repo)
    # files: paths or globs (.txt, .jsonl, .parquet)
    paths: list[str] = field(default_factory=list)
    # .txt: text between documents; "blank_line" splits at empty lines, "line" makes each line a document
    delimiter: str = "<|endoftext|>"
    # .jsonl / .parquet / hub rows: the column holding the text
    text_field: str = "text"
    # tinystories / hub: the Hugging Face split to read ("train" or "validation")
    hub_split: str = "train"
    hub_repo: str = "roneneldan/TinyStories"
    hub_config: str | None = None  # the dataset's configuration, e.g. wikitext-103-raw-v1 for Salesforce/wikitext
    cache_dir: str | None = None
    # which output split the documents go to: "auto" = by document hash (see DataConfig.val_fraction)
    split: Literal["auto", "train", "val"] = "auto"
    # at most this many documents from this source (required for synthetic, which never ends)
    limit: int | None = None
    # relative share when several sources are interleaved
    weight: float = 1.0
    # synthetic: generator seed
    seed: int = 0

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise ValueError(f"weight must be >= 0, got {self.weight}")
        if self.limit is not None and self.limit < 0:
            raise ValueError(f"limit must be >= 0, got {self.limit}")
        if self.kind == "files" and not self.paths:
            raise ValueError("a 'files' source needs paths: [file or glob, ...]")


@dataclass
class MixConfig:
    # first_exhausted: stop when any weighted source runs out (keeps the shares exact);
    # all_exhausted: keep drawing from the remaining sources until every one is empty.
    stop: Literal["first_exhausted", "all_exhausted"] = "all_exhausted"
    seed: int = 0


@dataclass
class CleanConfig:
    """Document filters; each one counts what it removed. A bound of 0 (or None) disables it."""

    normalize: bool = True  # Unicode NFC, unified newlines, collapsed spaces, stripped lines
    min_chars: int = 20
    max_chars: int | None = 100_000
    min_words: int = 5
    # share of characters that are neither letters nor whitespace (markup, tables, code, noise)
    max_non_letter_fraction: float = 0.25
    # Gopher: share of lines that repeat an earlier line, and share of characters in such lines
    max_dup_line_fraction: float = 0.30
    max_dup_line_char_fraction: float = 0.20
    # Gopher: share of word characters covered by the most frequent 2/3/4-gram
    max_top_ngram_fraction: dict[str, float] = field(
        default_factory=lambda: {"2": 0.20, "3": 0.18, "4": 0.16}
    )
    # Gopher: share of word characters in n-grams (5..10 words) that occur more than once
    max_dup_ngram_fraction: dict[str, float] = field(
        default_factory=lambda: {"5": 0.15, "6": 0.14, "7": 0.13, "8": 0.12, "9": 0.11, "10": 0.10}
    )

    def __post_init__(self) -> None:
        for name in ("max_top_ngram_fraction", "max_dup_ngram_fraction"):
            table = getattr(self, name)
            try:
                setattr(self, name, {str(int(k)): float(v) for k, v in table.items()})
            except (TypeError, ValueError):
                raise ValueError(f"{name} must map n-gram sizes to fractions, got {table!r}") from None


@dataclass
class DedupConfig:
    exact: bool = True
    near: bool = True
    # documents whose estimated Jaccard similarity (word shingles) is >= threshold are near duplicates
    threshold: float = 0.8
    num_perm: int = 128
    # LSH bands (rows per band = num_perm // bands); 0 = chosen from the threshold: as many rows as
    # keep the chance of proposing a pair at threshold - 0.05 above 99% (0.8 -> 25 x 5, 0.7 -> 32 x 4)
    bands: int = 0
    shingle_words: int = 3
    seed: int = 1

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")
        if not 0 <= self.bands <= self.num_perm:
            raise ValueError(f"bands must be between 0 (automatic) and num_perm ({self.num_perm}), got {self.bands}")


@dataclass
class TokenizerConfig:
    path: str = "runs/tok"  # a directory with tokenizer.json (slmkit's or Hugging Face's)
    # a pretrained tokenizer to fetch into `path` when it has none: a Hugging Face model id (Qwen/Qwen3-0.6B)
    hub_id: str | None = None
    train_if_missing: bool = False
    vocab_size: int = 4096
    train_sample_mb: float = 50.0  # cleaned training text used to train it
    # how `slm prepare` encodes (the ids are the same): "fast" (Rust `tokenizers`), "python" (slmkit's
    # cached encoder, quicker on repetitive text such as stories) or "auto" (time both, use the quicker)
    encoder: Literal["auto", "fast", "python"] = "auto"


@dataclass
class DataConfig:
    sources: dict[str, Any] = field(default_factory=lambda: {"stories": {"kind": "synthetic", "limit": 10_000}})
    mix: MixConfig = field(default_factory=MixConfig)
    clean: CleanConfig = field(default_factory=CleanConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    out_dir: str = "runs/data"
    val_fraction: float = 0.01  # for sources with split: auto
    shard_mb: float = 64.0  # text megabytes per shard (about 0.25M tokens per MB with a 4K vocab)
    workers: int = 0  # processes; 0 = one per CPU core
    batch_docs: int = 512  # documents per unit of work
    progress: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.sources, dict) or not self.sources:
            raise ValueError("sources must be a non-empty mapping of name -> source settings")
        self.sources = {
            str(name): src if isinstance(src, SourceConfig) else _source(str(name), src)
            for name, src in self.sources.items()
        }
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.shard_mb <= 0:
            raise ValueError(f"shard_mb must be > 0, got {self.shard_mb}")


def _source(name: str, data: Any) -> SourceConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"sources.{name}: expected a mapping, got {data!r}")
    return from_dict(SourceConfig, data, prefix=f"sources.{name}.")
