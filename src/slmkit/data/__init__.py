"""Data: text sources -> cleaning -> dedup -> tokenized memory-mapped shards -> batch loaders.

The write side lives in four rooms, in the order the data flows: `sources/` (files, the hub,
synthetic stories, mixing), `clean/`, `dedup/` and `prepare/` (stage 1 parts, shards, the
pipeline). The read side that training uses sits here at the top and is exported from here:
the manifest of a shard directory, the loaders, and the statistics. Shared by every room:
`config.py` (`DataConfig`, what `slm prepare` and a recipe's `data:` section hold) and `heap.py`
(returning freed heap to the system, used by dedup and prepare). Rooms import only earlier rooms
and the top: sources -> clean -> dedup -> prepare.

    slm prepare configs/synthetic.yaml          # or, from Python:
    from slmkit.config import load_config
    from slmkit.data import DataConfig, EvalBatches, TrainBatches, prepare, read_manifest
    manifest = prepare(load_config(DataConfig, "configs/synthetic.yaml"))
    train = TrainBatches(manifest.directory, batch_size=8, seq_len=256)

`slmkit.data.prepare` is the function here, so the subpackage of the same name is reached with
`from slmkit.data.prepare[.module] import name` (`import slmkit.data.prepare.shards as m` fails).
"""

from slmkit.data.config import CleanConfig, DataConfig, DedupConfig, MixConfig, SourceConfig, TokenizerConfig
from slmkit.data.manifest import Manifest, manifest_exists, read_manifest
from slmkit.data.prepare import prepare
from slmkit.data.stats import data_stats

_LOADERS = ("EvalBatches", "TokenStream", "TrainBatches")


def __getattr__(name: str):
    # the loaders need torch (~1 s and ~190 MB to import): loaded on first use, so `slm prepare`
    # and `slm data stats`, which import this package, stay small
    if name in _LOADERS:
        from slmkit.data import loaders

        return getattr(loaders, name)
    raise AttributeError(f"module 'slmkit.data' has no attribute '{name}'")


__all__ = ["CleanConfig", "DataConfig", "DedupConfig", "EvalBatches", "Manifest", "MixConfig", "SourceConfig",
           "TokenStream", "TokenizerConfig", "TrainBatches", "data_stats", "manifest_exists", "prepare",
           "read_manifest"]
