"""Planted exact and near duplicates must be found (precision and recall >= 0.95) through `prepare`."""

import random
import re

import numpy as np

from slmkit.data.clean.cleaning import normalize
from slmkit.data.config import DedupConfig
from slmkit.data.dedup.minhash import MinHasher, estimated_jaccard, lsh_bands
from slmkit.data.sources import read_txt

from ..conftest import run_prepare, shard_documents, write_jsonl

THRESHOLD = 0.7


def shingles(text: str, n: int = 3) -> set:
    words = re.findall(r"\w+", text.lower())
    return set(zip(*(words[i:] for i in range(n))))


def jaccard(a: str, b: str) -> float:
    x, y = shingles(a), shingles(b)
    return len(x & y) / len(x | y)


def edit(text: str, share: float, rng: random.Random) -> str:
    """Replace a share of the words with new words: the copy drifts away from the original."""
    words = text.split(" ")
    for i in rng.sample(range(len(words)), int(share * len(words))):
        words[i] = "".join(rng.choice("bcdfghjklmnpqrstvwxz") for _ in range(5))
    return " ".join(words)


def test_minhash_estimates_jaccard_without_bias(tinystories_valid):
    docs = [d for d in read_txt(tinystories_valid, "blank_line") if len(d.split()) > 80][:150]
    rng = random.Random(0)
    hasher = MinHasher(num_perm=128, bands=16, shingle_words=3)
    edited = [edit(d, rng.choice([0.02, 0.1, 0.3]), rng) for d in docs]
    estimates = estimated_jaccard(hasher.signatures(docs), hasher.signatures(edited))
    truth = np.array([jaccard(a, b) for a, b in zip(docs, edited)])
    assert abs(np.mean(estimates - truth)) < 0.02  # unbiased
    assert np.std(estimates - truth) < 0.06  # about sqrt(J(1-J)/128)


def test_planted_duplicates_found_with_high_precision_and_recall(tmp_path, tinystories_valid, small_tokenizer_dir,
                                                                 small_tokenizer):
    base = [normalize(d) for d in read_txt(tinystories_valid, "blank_line") if len(d.split()) > 60][:300]
    rng = random.Random(1)
    corpus = list(base)
    planted = {}  # index in corpus -> index of its original
    # 0.0: exact copies; 0.02-0.06 of words replaced: J ~0.94-0.82, above the threshold; 0.25 / 0.5: J ~0.45 / 0.2
    for level in (0.0, 0.0, 0.02, 0.04, 0.06, 0.25, 0.5):
        for i in rng.sample(range(len(base)), 25):
            planted[len(corpus)] = i
            corpus.append(edit(base[i], level, rng) if level else base[i])
    order = list(range(len(base), len(corpus)))
    write_jsonl(tmp_path / "docs.jsonl", corpus)
    manifest = run_prepare(tmp_path / "out", small_tokenizer_dir, [
        f"sources={{docs: {{kind: files, paths: [{tmp_path / 'docs.jsonl'}], split: train}}}}",
        f"dedup.threshold={THRESHOLD}", "clean.max_dup_ngram_fraction={}", "clean.max_top_ngram_fraction={}",
    ])
    kept_docs = shard_documents(manifest, "train", small_tokenizer)
    kept, k = set(), 0  # shards keep the input order: match the kept documents as a subsequence
    for j, doc in enumerate(corpus):
        if k < len(kept_docs) and kept_docs[k] == doc:
            kept.add(j)
            k += 1
    assert k == len(kept_docs)
    truth = {j for j in order if jaccard(corpus[j], base[planted[j]]) >= THRESHOLD}
    removed = {j for j in order if j not in kept}
    assert len(truth) > 100 and len(order) - len(truth) > 30  # both kinds planted
    precision = len(removed & truth) / max(1, len(removed))
    recall = len(removed & truth) / len(truth)
    assert precision >= 0.95 and recall >= 0.95, (precision, recall)
    # no unrelated document dropped: an original may only go when an earlier original is its near twin
    for j in range(len(base)):
        if j not in kept:
            assert max(jaccard(base[j], base[i]) for i in range(j)) >= THRESHOLD - 0.1, base[j][:80]
    stats = manifest.data["dedup"]
    assert stats["exact_removed"] >= 45  # 50 exact copies, a few of them of the same original
    dropped_originals = len([j for j in range(len(base)) if j not in kept])
    assert stats["exact_removed"] + stats["near_removed"] == len(removed) + dropped_originals


def test_signatures_do_not_depend_on_the_batch(tinystories_valid):
    """A document's signature is the same alone, in any batch, and in any process (stable hashes)."""
    docs = [d for d in read_txt(tinystories_valid, "blank_line")][:300] + ["", "one", "two words", "the same"]
    a = MinHasher(num_perm=64, bands=16, seed=3)
    b = MinHasher(num_perm=64, bands=16, seed=3)
    together = a.signatures(docs)
    alone = np.concatenate([b.signatures([d]) for d in reversed(docs)])[::-1]
    assert np.array_equal(together, alone)
    assert np.array_equal(a.signatures(["The cat sat."]), a.signatures(["the  CAT sat"]))  # same words
    assert not np.array_equal(together[-1], together[-2])
    assert (a.band_keys(together) == b.band_keys(alone)).all()


def test_short_documents_are_unbiased_too():
    """Documents with fewer shingles than bins fill the empty bins by densification: still unbiased."""
    rng = random.Random(5)
    vocab = [f"w{i}" for i in range(3000)]
    pairs = []
    for _ in range(400):
        words = rng.sample(vocab, rng.randrange(8, 60))
        other = list(words)
        for i in rng.sample(range(len(other)), rng.randrange(0, len(other) // 2)):
            other[i] = rng.choice(vocab)
        pairs.append((" ".join(words), " ".join(other)))
    hasher = MinHasher(num_perm=128, bands=16, shingle_words=3)
    est = estimated_jaccard(hasher.signatures([p[0] for p in pairs]), hasher.signatures([p[1] for p in pairs]))
    truth = np.array([jaccard(x, y) for x, y in pairs])
    assert abs(np.mean(est - truth)) < 0.02
    assert np.std(est - truth) < 0.08


def test_a_large_bucket_of_near_copies_gives_linear_candidates(tmp_path, tinystories_valid, small_tokenizer_dir,
                                                                small_tokenizer, monkeypatch):
    """2,000 lightly edited copies of one story share most band keys: one bucket of 2,000 per band.
    Candidates must stay O(documents x bands) (first member + predecessor per bucket), not O(n^2),
    the copies must still be found, and the unrelated stories around them kept. A small key range
    per slice makes the bands go through several slices too."""
    from slmkit.data.dedup import dedup

    monkeypatch.setattr(dedup, "DOCS_PER_SLICE", 500)
    stories = [normalize(d) for d in read_txt(tinystories_valid, "blank_line") if len(d.split()) > 60]
    original = max(stories, key=len)
    others = [d for d in stories if d is not original][:200]
    assert len(original.split()) > 100 and len(others) == 200
    rng = random.Random(7)
    copies = [edit(original, 3 / len(original.split(" ")), rng) for _ in range(2000)]  # 3 words each: J ~0.9
    corpus = others[:100] + [original] + copies + others[100:]
    write_jsonl(tmp_path / "docs.jsonl", corpus)
    manifest = run_prepare(tmp_path / "out", small_tokenizer_dir, [
        f"sources={{docs: {{kind: files, paths: [{tmp_path / 'docs.jsonl'}], split: train}}}}",
        "clean.max_dup_ngram_fraction={}", "clean.max_top_ngram_fraction={}",
    ])
    stats = manifest.data["dedup"]
    n = len(corpus)
    bands = lsh_bands(DedupConfig())  # the default threshold (0.8): 25 bands of 5 rows
    assert stats["candidate_pairs"] <= 2 * n * bands  # at most 2 (m - 1) per bucket and band
    assert stats["candidate_pairs"] < n * (n - 1) / 2 / 10  # far from all pairs of the bucket
    assert stats["verified_pairs"] <= stats["candidate_pairs"]
    kept = shard_documents(manifest, "train", small_tokenizer)
    assert stats["exact_removed"] < 20 and stats["near_removed"] >= 0.95 * len(copies)
    unrelated_dropped = [d for d in others if d not in kept and
                         max(jaccard(d, o) for o in others if o is not d) < THRESHOLD - 0.1]
    assert not unrelated_dropped
    assert original in kept  # the earliest of the group stays



def test_band_pairs_of_one_bucket_are_linear():
    from slmkit.data.dedup import band_pairs

    keys = np.array([7] * 3000 + [9, 9, 11], dtype=np.uint64)
    pairs = band_pairs(keys, np.arange(len(keys)) * 2)
    assert len(pairs) <= 2 * 2999 + 1 and (pairs[:, 0] < pairs[:, 1]).all()
    assert {(0, 2 * j) for j in range(1, 3000)} <= set(map(tuple, pairs.tolist()))  # all with the first member
    assert (6000, 6002) in set(map(tuple, pairs.tolist()))
