"""Bits per byte on held-out text, for a model and for the baselines every report shows beside it.

Documents come from a text file (split at `<|endoftext|>` when it has any, else at blank lines) or from a
prepared data directory's split (its token stream cut at end-of-text and decoded). A model scores each
document with lm-eval's rolling log-likelihood (likelihood.py); the baselines score the same documents the
same way — each document conditioned on the end-of-text prefix, every token predicted once:

- chance: the uniform distribution over the tokenizer's vocabulary;
- unigram and Kneser-Ney n-gram models (ngram.py) trained on the same training token stream the model saw.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import yaml

from slmkit.data.loaders import TokenStream
from slmkit.data.manifest import manifest_exists
from slmkit.errors import DataError
from slmkit.eval.ngram import KneserNeyModel, UnigramModel
from slmkit.eval.likelihood import LikelihoodTotals

EOT = "<|endoftext|>"
TEXT_TASK = "text"


def documents_from_file(path: str | os.PathLike, delimiter: str = "auto") -> list[str]:
    """Documents of a UTF-8 text file: delimiter "eot" (<|endoftext|>), "blank_line", "line", "none"
    (the whole file), or "auto" (eot when the file has one, else blank_line)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"text file not found: {path}")
    text = path.read_text(encoding="utf-8")
    if delimiter == "auto":
        delimiter = "eot" if EOT in text else "blank_line"
    pieces = {"eot": lambda: text.split(EOT), "blank_line": lambda: text.split("\n\n"),
              "line": lambda: text.split("\n"), "none": lambda: [text]}
    if delimiter not in pieces:
        raise DataError(f"unknown delimiter {delimiter!r}: use auto, eot, blank_line, line or none")
    documents = [d.strip() for d in pieces[delimiter]() if d.strip()]
    if not documents:
        raise DataError(f"{path} holds no text to score")
    return documents


def documents_from_data_dir(data_dir: str | os.PathLike, tokenizer, split: str = "val",
                            limit: int | None = None) -> list[str]:
    """The documents of a prepared split (`slm prepare`'s shards), decoded from its token stream."""
    stream = TokenStream(data_dir, split, tokenizer=tokenizer)
    ids = stream.read(0, len(stream))
    eos = stream.manifest.eos_id
    ends = np.flatnonzero(ids == eos)
    documents, start = [], 0
    for end in list(ends) + [len(ids)]:
        if end > start:
            documents.append(tokenizer.decode(ids[start:end].tolist()))
        start = end + 1
        if limit is not None and len(documents) >= limit:
            break
    if not documents:
        raise DataError(f"the {split} split of {data_dir} is empty")
    return documents


def run_data_dir(model_path: str | os.PathLike) -> Path | None:
    """The prepared data directory a training run read (its config.yaml's data.out_dir), if it still exists."""
    config = Path(model_path) / "config.yaml"
    if not config.is_file():
        return None
    try:
        out_dir = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("data", {}).get("out_dir")
    except (yaml.YAMLError, AttributeError):
        return None
    return Path(out_dir) if out_dir and manifest_exists(out_dir) else None


def training_stream(data_dir: str | os.PathLike, tokenizer, split: str = "train",
                    max_tokens: int | None = None) -> np.ndarray:
    """The training split's token ids (the n-gram baselines' training text), at most `max_tokens`."""
    stream = TokenStream(data_dir, split, tokenizer=tokenizer)
    return stream.read(0, min(len(stream), max_tokens or len(stream)))


def baseline_text_metrics(tokenizer, documents: list[str], train_ids=None, order: int = 3) -> dict[str, dict]:
    """{"chance": metrics} and, when `train_ids` is given, {"unigram": ..., f"kneser-ney-{order}": ...} on
    `documents`; each metrics dict as LikelihoodTotals.metrics()."""
    vocab, eos = tokenizer.vocab_size, tokenizer.eos_id
    scorers = {"chance": lambda stream: -(len(stream) - 1) * math.log(vocab)}
    if train_ids is not None:
        log_unigram = np.log(UnigramModel.train(train_ids, vocab).probabilities())
        kneser_ney = KneserNeyModel.train(train_ids, vocab, order)
        scorers["unigram"] = lambda stream: float(log_unigram[stream[1:]].sum())
        scorers[f"kneser-ney-{order}"] = lambda stream: float(np.log(kneser_ney.target_probabilities(stream)).sum())
    totals = {name: LikelihoodTotals() for name in scorers}
    for text, ids in zip(documents, tokenizer.encode_batch(documents)):
        if ids:
            stream = np.array([eos] + ids, dtype=np.int64)  # conditioned on end-of-text, as the model is
            for name, score in scorers.items():
                totals[name] += LikelihoodTotals.of_document(text, score(stream), len(ids))
    return {name: t.metrics() for name, t in totals.items()}
