"""Reading tokenizer files: Hugging Face `tokenizer.json` (+ tokenizer_config.json) and GPT-2's
encoder.json + vocab.bpe. hf_writer.py writes the first format.

Only byte-level BPE is supported (GPT-2, Llama 3, Qwen2/Qwen3 and the tokenizers slmkit trains).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from slmkit.errors import TokenizerError
from slmkit.tokenizer.bpe import Tokenizer
from slmkit.tokenizer.byte_unicode import str_to_token
from slmkit.tokenizer.hf_writer import TOKENIZER_CONFIG_FILE, TOKENIZER_FILE
from slmkit.tokenizer.patterns import GPT2


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """A directory holding tokenizer.json (+ tokenizer_config.json) or GPT-2's encoder.json +
    vocab.bpe, or a tokenizer.json file itself."""
    path = Path(path)
    if path.is_dir():
        if (path / TOKENIZER_FILE).is_file():
            return _load_tokenizer_json(path / TOKENIZER_FILE)
        if (path / "encoder.json").is_file() and (path / "vocab.bpe").is_file():
            return load_gpt2_files(path / "encoder.json", path / "vocab.bpe")
        raise TokenizerError(
            f"no tokenizer in {path}: expected tokenizer.json, or encoder.json + vocab.bpe "
            "(train one with 'slm tokenizer train')"
        )
    if path.is_file() and path.suffix == ".json":
        return _load_tokenizer_json(path)
    raise TokenizerError(f"tokenizer not found: {path} (give a directory with tokenizer.json)")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TokenizerError(f"{path} is not valid JSON ({e}); the file may be truncated or corrupt") from None


def _pre_tokenizer_pattern(spec: dict | None) -> str:
    """Find the regex of a byte-level pre-tokenizer (a ByteLevel with its own regex, or a Split)."""
    if spec is None:
        raise TokenizerError("tokenizer.json has no pre_tokenizer; only byte-level BPE is supported")
    kind = spec.get("type")
    if kind == "ByteLevel":
        if spec.get("add_prefix_space"):
            raise TokenizerError("ByteLevel add_prefix_space=true is not supported")
        return GPT2
    if kind == "Split":
        pattern = spec.get("pattern", {})
        if "Regex" not in pattern or spec.get("invert") or spec.get("behavior") != "Isolated":
            raise TokenizerError(f"unsupported Split pre-tokenizer: {json.dumps(spec)[:120]}")
        return pattern["Regex"]
    if kind == "Sequence":
        steps = spec.get("pretokenizers", [])
        split = [s for s in steps if s.get("type") == "Split"]
        level = [s for s in steps if s.get("type") == "ByteLevel"]
        if len(split) == 1 and len(level) == 1 and not level[0].get("use_regex", True):
            return _pre_tokenizer_pattern(split[0])
        if not split and len(level) == 1:
            return _pre_tokenizer_pattern(level[0])
    raise TokenizerError(f"unsupported pre_tokenizer {kind!r}; only byte-level BPE is supported")


def _normalizer(spec: dict | None) -> str | None:
    if spec is None:
        return None
    kind = spec.get("type")
    if kind in ("NFC", "NFD", "NFKC", "NFKD"):
        return kind
    if kind == "Sequence" and len(spec.get("normalizers", [])) == 1:
        return _normalizer(spec["normalizers"][0])
    if kind == "Sequence" and not spec.get("normalizers"):
        return None
    raise TokenizerError(f"unsupported normalizer {kind!r}")


def _special_name(value) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return value


def _load_tokenizer_json(path: Path) -> Tokenizer:
    data = _read_json(path)
    model = data.get("model", {})
    if model.get("type") != "BPE":
        raise TokenizerError(f"{path}: model type {model.get('type')!r} is not BPE")
    vocab = {int(i): str_to_token(s) for s, i in model["vocab"].items()}
    token_ids = {}
    for i in sorted(vocab):
        token_ids.setdefault(vocab[i], i)
    to_id = {s: i for s, i in model["vocab"].items()}
    merges = []
    for m in model.get("merges", []):
        left, right = m.split(" ", 1) if isinstance(m, str) else m
        if left not in to_id or right not in to_id:
            raise TokenizerError(f"{path}: merge {left!r} {right!r} uses a token that is not in the vocabulary")
        merges.append((to_id[left], to_id[right]))
    specials = {t["content"]: int(t["id"]) for t in data.get("added_tokens", [])}
    config = {}
    if (path.parent / TOKENIZER_CONFIG_FILE).is_file():
        config = _read_json(path.parent / TOKENIZER_CONFIG_FILE)
    eos = _special_name(config.get("eos_token"))
    tok = Tokenizer(
        vocab,
        merges,
        specials,
        pattern=_pre_tokenizer_pattern(data.get("pre_tokenizer")),
        normalize=_normalizer(data.get("normalizer")),
        chat_template=config.get("chat_template"),
        eos_token=eos if eos in specials else None,
        ignore_merges=bool(model.get("ignore_merges")),
    )
    return tok


def load_gpt2_files(encoder_path: str | os.PathLike, merges_path: str | os.PathLike) -> Tokenizer:
    """GPT-2's original files: encoder.json (token string -> id) and vocab.bpe (merges)."""
    encoder = _read_json(Path(encoder_path))
    lines = Path(merges_path).read_text(encoding="utf-8").splitlines()
    specials = {s: i for s, i in encoder.items() if s.startswith("<|") and s.endswith("|>")}
    vocab = {i: str_to_token(s) for s, i in encoder.items() if s not in specials}
    merges = []
    for line in lines:
        if not line or line.startswith("#version"):
            continue
        left, right = line.split(" ")
        merges.append((encoder[left], encoder[right]))
    return Tokenizer(vocab, merges, specials, pattern=GPT2)
