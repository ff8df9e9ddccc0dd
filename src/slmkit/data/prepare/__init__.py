"""`prepare(cfg)`, what `slm prepare` runs: the sources, cleaned, deduplicated and tokenized into
memory-mapped shards with a manifest. Stage 1 (`document_parts`) cleans, hashes, MinHashes and
tokenizes in worker processes into parts on disk; stage 2 is `slmkit.data.dedup`; stage 3
(`shards`) copies the kept documents' tokens into shards; `tokenizing` loads or trains the
tokenizer and picks the token dtype. The only subpackage of data/ that writes a shard directory.

    from slmkit.data.prepare import prepare
"""

from slmkit.data.prepare.document_parts import SPLITS, Part, build_parts
from slmkit.data.prepare.pipeline import prepare
from slmkit.data.prepare.shards import ShardPlan, plan_shards, write_shard
from slmkit.data.prepare.tokenizing import BatchEncoder, load_data_tokenizer, token_dtype, train_tokenizer

__all__ = ["SPLITS", "BatchEncoder", "Part", "ShardPlan", "build_parts", "load_data_tokenizer", "plan_shards",
           "prepare", "token_dtype", "train_tokenizer", "write_shard"]
