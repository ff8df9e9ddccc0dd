"""The read side's front door: `slmkit.data` exports it without importing torch, and the manifest API
(exists, vocab_size, the tokenizer copy) gives one-line DataErrors on missing or corrupt manifests."""

import json
import shutil
import subprocess
import sys

import pytest

import slmkit.data
from slmkit.data import manifest_exists, read_manifest
from slmkit.errors import DataError
from slmkit.tokenizer import train_bpe_from_texts


def test_front_door_exports_and_stays_light():
    for name in slmkit.data.__all__:
        assert getattr(slmkit.data, name) is not None, name
    from slmkit.data import EvalBatches, TrainBatches  # the loaders, loaded on first use
    from slmkit.data.loaders import EvalBatches as E
    from slmkit.data.loaders import TrainBatches as T

    assert (TrainBatches, EvalBatches) == (T, E)
    with pytest.raises(AttributeError):
        slmkit.data.NoSuchThing
    probe = "import sys, slmkit.data; from slmkit.data.prepare import prepare; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # `slm prepare` stays small (torch is ~190 MB of RSS)


def test_manifest_api(prepared, small_tokenizer, tmp_path):
    out, manifest = prepared
    assert manifest_exists(out) and not manifest_exists(tmp_path)
    assert manifest.vocab_size == small_tokenizer.vocab_size == 512
    assert manifest.split_tokens("train") == sum(s["tokens"] for s in manifest.shards("train")) > 0
    assert manifest.split_tokens("test") == 0
    assert manifest.load_tokenizer().fingerprint() == small_tokenizer.fingerprint()
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    train_bpe_from_texts(["some other words, and other words again"], 300).save(copy / "tokenizer")
    with pytest.raises(DataError, match="tokenizer mismatch"):
        read_manifest(copy).load_tokenizer()


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.unlink(), "no manifest.json in"),
    (lambda p: p.write_text("{not json"), "is not valid JSON"),
    (lambda p: p.write_text("[1, 2]"), "unknown format"),
    (lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "format": "other/9"})),
     "unknown format 'other/9'"),
    (lambda p: p.write_text(json.dumps({k: v for k, v in json.loads(p.read_text()).items() if k != "splits"})),
     "is corrupt (no 'splits')"),
    (lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "tokenizer": {"eos_id": 0}})),
     "is corrupt (no 'tokenizer.fingerprint')"),
])
def test_missing_or_corrupt_manifest_is_one_line(prepared, tmp_path, damage, message):
    out, _ = prepared
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    damage(copy / "manifest.json")
    with pytest.raises(DataError) as err:
        read_manifest(copy)
    assert message in str(err.value) and "\n" not in str(err.value)
