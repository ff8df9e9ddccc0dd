"""`prepare` end to end: round trip, token dtype, resume, parts over several processes, bounded
shard reads with dedup holes, and the two encoders."""

import numpy as np

from slmkit.data.clean import DocumentCleaner
from slmkit.data.config import CleanConfig
from slmkit.data.prepare import token_dtype
from slmkit.data.sources import read_txt

from ..conftest import run_prepare, shard_documents


def test_round_trip_gives_back_the_cleaned_documents(prepared, tinystories_train, small_tokenizer):
    out, manifest = prepared
    from slmkit.data.sources import generate_stories

    cfg = CleanConfig()
    real = DocumentCleaner(cfg)
    synth = DocumentCleaner(cfg)
    expected = {c for d in list(read_txt(tinystories_train, "<|endoftext|>"))[:400] if (c := real(d))}
    expected |= {c for d in generate_stories(300, seed=3) if (c := synth(d))}
    train = shard_documents(manifest, "train", small_tokenizer)
    val = shard_documents(manifest, "val", small_tokenizer)
    assert set(train).isdisjoint(val)
    assert set(train) | set(val) == expected  # nothing lost, nothing invented (no duplicates in this input)
    assert len(train) + len(val) == len(expected)
    assert 0.04 < len(val) / len(expected) < 0.18  # val_fraction 0.1
    assert len(manifest.shards("train")) > 1
    s = manifest.data["sources"]
    assert s["real"]["docs_read"] == 400 and s["synth"]["docs_read"] == 300
    # each source's kept documents and tokens per split add up to the shards' counts
    synth_docs = {d for d in expected if d in {c for d2 in generate_stories(300, seed=3) if (c := synth(d2))}}
    assert s["synth"]["splits"]["train"]["docs"] + s["synth"]["splits"]["val"]["docs"] == len(synth_docs)
    for split in ("train", "val"):
        for key in ("docs", "tokens"):
            assert sum(src["splits"][split][key] for src in s.values()) == manifest.data["splits"][split][key]
    assert s["real"]["splits"]["val"]["docs"] > 0 and s["synth"]["splits"]["val"]["docs"] > 0


def test_dtype_follows_vocabulary_size(tmp_path, tinystories_valid):
    assert token_dtype(65_535) == np.uint16 and token_dtype(65_536) == np.uint32 and token_dtype(512) == np.uint16
    from slmkit.tokenizer import load_tokenizer
    from tests.conftest import SHARED_DATA

    qwen = SHARED_DATA / "qwen3-tokenizer"
    manifest = run_prepare(tmp_path / "q", qwen, ["sources={s: {kind: synthetic, limit: 40}}", "val_fraction=0"])
    assert manifest.dtype == np.uint32 and manifest.data["tokenizer"]["vocab_size"] == 151_669
    tok = load_tokenizer(qwen)
    docs = shard_documents(manifest, "train", tok)
    assert len(docs) == manifest.data["splits"]["train"]["docs"] >= 35  # a few may fail the repetition rules
    assert max(int(np.max(m)) for m in manifest.memmaps("train")) > 65_535


def test_resume_skips_finished_shards(prepared, tmp_path, small_tokenizer_dir, tinystories_train):
    import shutil

    out, manifest = prepared
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "manifest.json").unlink()
    first = manifest.shards("train")[0]["file"]
    (copy / first).unlink()  # as if the run stopped while writing shards
    cfg_overrides = [
        f"sources={{real: {{kind: files, paths: [{tinystories_train}], limit: 400}}, "
        f"synth: {{kind: synthetic, limit: 300, seed: 3, weight: 0.5}}}}",
        "val_fraction=0.1", "shard_mb=0.1", "workers=2",
    ]
    again = run_prepare(copy, small_tokenizer_dir, cfg_overrides)
    reused = {s["file"]: s["reused"] for s in again.shards("train")}
    assert reused[first] is False and all(v for f, v in reused.items() if f != first)
    assert [s["sha256"] for s in again.shards("train")] == [s["sha256"] for s in manifest.shards("train")]


def test_many_parts_in_several_processes_keep_order(tmp_path, small_tokenizer_dir, small_tokenizer, monkeypatch):
    from slmkit.data.prepare import document_parts
    from slmkit.data.sources import generate_stories

    monkeypatch.setattr(document_parts, "BATCHES_PER_PART", 2)  # 7 parts of 2 x 16 documents
    manifest = run_prepare(tmp_path / "out", small_tokenizer_dir, [
        "sources={s: {kind: synthetic, limit: 200, seed: 4}}", "val_fraction=0", "batch_docs=16", "workers=2",
        "clean.max_dup_ngram_fraction={}", "clean.max_top_ngram_fraction={}", "dedup.near=false",
    ])
    assert shard_documents(manifest, "train", small_tokenizer) == list(generate_stories(200, seed=4))


def test_small_read_blocks_and_removed_documents_keep_the_round_trip(tmp_path, small_tokenizer_dir, small_tokenizer,
                                                                     monkeypatch):
    """Shards are gathered from the parts in bounded blocks; documents removed by dedup or sent to the
    other split leave holes that the gather must skip."""
    from slmkit.data.prepare import document_parts, shards
    from slmkit.data.sources import generate_stories

    from ..conftest import write_jsonl

    monkeypatch.setattr(shards, "BLOCK_TOKENS", 300)  # a few documents per read
    monkeypatch.setattr(document_parts, "BATCHES_PER_PART", 3)
    stories = list(generate_stories(150, seed=9))
    docs = [s if i % 7 else stories[0] for i, s in enumerate(stories)]  # exact copies of story 0
    write_jsonl(tmp_path / "d.jsonl", docs)
    manifest = run_prepare(tmp_path / "out", small_tokenizer_dir, [
        f"sources={{d: {{kind: files, paths: [{tmp_path / 'd.jsonl'}]}}}}", "val_fraction=0.2", "batch_docs=16",
        "dedup.near=false", "clean.max_dup_ngram_fraction={}", "clean.max_top_ngram_fraction={}", "shard_mb=0.005",
    ])
    seen, unique = set(), []
    for d in docs:
        if d not in seen:
            seen.add(d)
            unique.append(d)
    train = shard_documents(manifest, "train", small_tokenizer)
    val = shard_documents(manifest, "val", small_tokenizer)
    assert manifest.data["dedup"]["exact_removed"] == len(docs) - len(unique)
    assert len(manifest.shards("train")) > 3 and val
    assert sorted(train + val) == sorted(unique)
    assert train == [d for d in unique if d in set(train)]  # input order kept


def test_encoders_give_the_same_ids(small_tokenizer, tinystories_valid):
    from slmkit.data.prepare import BatchEncoder

    texts = [d for d in read_txt(tinystories_valid, "blank_line")][:200]
    auto = BatchEncoder(small_tokenizer, "auto")
    results = [auto(texts[k::12]) for k in range(12)]  # 8 batches with python, then the fast probe
    assert auto.calls == 12 and set(auto.seconds_per_byte) == {"python", "fast"}
    assert results[0] == BatchEncoder(small_tokenizer, "fast")(texts[0::12])
    assert results[9] == BatchEncoder(small_tokenizer, "python")(texts[9::12])
    assert all(ids[-1] == small_tokenizer.eos_id for r in results for ids in r)
