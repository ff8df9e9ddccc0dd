"""The offline tinystories error, and mixing by weight and splitting by hash."""

from collections import Counter

import pytest

from slmkit.data.config import MixConfig, SourceConfig
from slmkit.data.sources import document_hash, hub, mix_sources, split_of
from slmkit.errors import OfflineError


def test_offline_tinystories_is_a_one_line_error(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(OfflineError) as err:
        next(hub.read_hub_dataset("roneneldan/TinyStories", "validation"))
    message = str(err.value)
    assert "\n" not in message and "offline" in message and "kind=files" in message


def test_weights_set_the_shares_and_split_is_by_hash():
    sources = {"a": SourceConfig(kind="synthetic", limit=3000, seed=1, weight=3.0),
               "b": SourceConfig(kind="synthetic", limit=3000, seed=2, weight=1.0)}
    drawn = list(mix_sources(sources, MixConfig(stop="first_exhausted", seed=0)))
    share = Counter(name for name, _ in drawn)
    assert abs(share["a"] / len(drawn) - 0.75) < 0.03
    assert drawn == list(mix_sources(sources, MixConfig(stop="first_exhausted", seed=0)))
    splits = [split_of(document_hash(text), 0.2) for _, text in drawn]
    assert abs(splits.count("val") / len(splits) - 0.2) < 0.03
    assert splits == [split_of(document_hash(text), 0.2) for _, text in drawn]


def test_hub_source_reads_a_named_configuration(monkeypatch):
    """kind: hub reads any hub dataset: repo, configuration and split go to datasets.load_dataset as given."""
    import datasets

    calls = []

    def fake_load_dataset(repo, name, split, cache_dir):
        calls.append((repo, name, split))
        return datasets.Dataset.from_dict({"text": ["= Heading =", "", "A paragraph of text.", "Another one."]})

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # read from the cache: no reachability probe
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    source = SourceConfig(kind="hub", hub_repo="Salesforce/wikitext", hub_config="wikitext-103-raw-v1",
                          hub_split="train", limit=3)
    from slmkit.data.sources import open_source

    assert list(open_source(source)) == ["= Heading =", "A paragraph of text."]  # 3 rows, the empty one skipped
    assert calls == [("Salesforce/wikitext", "wikitext-103-raw-v1", "train")]
