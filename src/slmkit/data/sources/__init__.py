"""Where the raw text comes from: local files (.txt, .jsonl, .parquet), the Hugging Face hub
(TinyStories), and a synthetic story generator that needs no download; `mix_sources` interleaves
the configured sources by weight, and `document_hash` / `split_of` send each document to train or
val by a hash of its text (the same on every run). Reads `slmkit.data.config` only.
"""

from slmkit.data.sources.hub import hub_reachable, read_hub_dataset
from slmkit.data.sources.local_files import read_files, read_txt
from slmkit.data.sources.mixing import check_sources, document_hash, mix_sources, open_source, split_of
from slmkit.data.sources.synthetic import generate_stories

__all__ = ["check_sources", "document_hash", "generate_stories", "hub_reachable", "mix_sources", "open_source",
           "read_files", "read_hub_dataset", "read_txt", "split_of"]
