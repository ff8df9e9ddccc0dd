import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from slmkit.data.sources import local_files
from slmkit.data.sources.local_files import read_files, read_txt
from slmkit.errors import DataError


def test_txt_endoftext_blank_line_and_line_delimiters(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("one\ntwo<|endoftext|>three<|endoftext|>\n<|endoftext|>four", encoding="utf-8")
    assert [d.strip() for d in read_txt(f, "<|endoftext|>")] == ["one\ntwo", "three", "four"]
    g = tmp_path / "b.txt"
    g.write_text("para one\nstill one\n\n  \nsecond\n\n\nthird\n", encoding="utf-8")
    assert [d.strip() for d in read_txt(g, "blank_line")] == ["para one\nstill one", "second", "third"]
    assert [d.strip() for d in read_txt(g, "line")] == ["para one", "still one", "second", "third"]


def test_chunked_reading_matches_whole_file_split(tmp_path, monkeypatch, tinystories_train):
    text = tinystories_train.read_bytes()[:300_000].decode("utf-8", errors="ignore")
    f = tmp_path / "t.txt"
    f.write_text(text, encoding="utf-8")
    monkeypatch.setattr(local_files, "CHUNK_BYTES", 1000)  # delimiters and characters cut across chunks
    expected = [d for d in text.split("<|endoftext|>") if d.strip()]
    assert list(read_txt(f, "<|endoftext|>")) == expected


def test_jsonl_parquet_and_globs(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.jsonl").write_text('{"text": "alpha"}\n\n{"text": "beta", "id": 2}\n', encoding="utf-8")
    pq.write_table(pa.table({"body": ["gamma", "delta"]}), tmp_path / "d" / "y.parquet")
    assert list(read_files([str(tmp_path / "d" / "*.jsonl")])) == ["alpha", "beta"]
    assert list(read_files([str(tmp_path / "d" / "y.parquet")], text_field="body")) == ["gamma", "delta"]


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing.txt", "no input file matches"),
    (lambda p: (p / "bad.txt").write_bytes(b"ok text \xff\xfe more") and p / "bad.txt", "not valid UTF-8"),
    (lambda p: (p / "x.jsonl").write_text('{"body": "no text field"}\n') and p / "x.jsonl", "no 'text' field"),
    (lambda p: (p / "x.csv").write_text("a,b\n") and p / "x.csv", "unsupported file type"),
])
def test_bad_input_is_one_line_data_error(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(DataError) as err:
        list(read_files([str(path)]))
    assert message in str(err.value) and "\n" not in str(err.value)
