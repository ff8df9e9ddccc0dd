"""`slm eval` and `slm lm-eval` end to end on a tiny saved model: tables on stdout, the report directory, CI gates
as exit codes, one-line errors; the same model behind `slm serve` as an --endpoint, with a scripted judge;
and lm-eval's own CLI finding slmkit's model."""

from __future__ import annotations

import json

import pytest

from slmkit.cli import main
from slmkit.data.sources import generate_stories
from slmkit.tokenizer import train_bpe_from_texts
from tests.eval.lm_eval_reference import tiny_scoring_model, write_rolling_yaml
from tests.eval.test_endpoint import FakeServer, chat_reply
from tests.eval.test_generation_tasks import GOOD_GRADES
from tests.eval.test_harness import PETS, PETS_YAML
from tests.serve.conftest import ServerProcess


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval-cli")
    tok = train_bpe_from_texts(list(generate_stories(150, seed=3)), 300)
    tok.save(root / "tok")
    tiny_scoring_model(tok.vocab_size, max_seq_len=256).save_pretrained(root / "model", tokenizer_dir=root / "tok")
    (root / "pets.jsonl").write_text("".join(json.dumps(d) + "\n" for d in PETS))
    (root / "pets.yaml").write_text(PETS_YAML.replace("DATA", "pets.jsonl"))
    stories = list(generate_stories(6, seed=9))
    (root / "valid.txt").write_text("<|endoftext|>".join(stories))
    (root / "valid.jsonl").write_text("".join(json.dumps({"text": s}) + "\n" for s in stories))
    return root


def test_eval_prints_tables_writes_the_report_and_gates(workspace, capsys):
    w = workspace
    args = ["eval", f"tiny={w / 'model'}", str(w / "model"), "--task", str(w / "pets.yaml"), "--text",
            str(w / "valid.txt"), "--report", str(w / "report"), "--no-progress"]
    assert main(args + ["--fail-below", "pets.acc=0.0"]) == 0
    out = capsys.readouterr().out
    assert "pets (multiple_choice, 3 documents)" in out and "text (rolling, 6 documents)" in out
    assert "tiny " in out and "model " in out and "*chance*" in out
    results = json.loads((w / "report" / "results.json").read_text())
    assert [m["name"] for m in results["models"]] == ["tiny", "model"]
    assert results["results"]["tiny"] == results["results"]["model"]  # the same weights twice
    assert main(args + ["--fail-above", "text.bits_per_byte=0.5"]) == 1
    assert "gate failed: tiny text bits_per_byte" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--task", "hellaswagg"], "error: unknown task 'hellaswagg'"),
    (["--suite", "trivia"], "error: unknown suite 'trivia'"),
    (["--text", "missing.txt"], "error: text file not found: missing.txt"),
    (["--fail-below", "acc"], "error: --fail-below 'acc': write METRIC=VALUE"),
    (["--suite", "stories-judge"], "error: stories_judge grades with a judge model: give --judge URL"),
    (["--endpoint", "localhost:8000"], "error: --endpoint 'localhost:8000' is not an http(s) URL"),
    (["--model", "demo", "--suite", "safety"], "error: 1 --model names for 0 --endpoint URLs"),
    (["--suite", "safety", "--safety-category", "weapons"], "error: unknown safety categories ['weapons']"),
])
def test_eval_errors_are_one_line(workspace, capsys, extra, message):
    assert main(["eval", str(workspace / "model"), "--no-progress", *extra]) == 1
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_nothing_to_evaluate_is_one_line(capsys):
    assert main(["eval", "--suite", "safety", "--no-progress"]) == 1
    assert capsys.readouterr().err.startswith("error: nothing to evaluate: name a model directory or give --endpoint")


def test_an_endpoint_scores_and_generates_as_the_directory_does(workspace, tmp_path, capsys):
    """The served model beside its own directory: equal likelihood metrics, equal greedy safety replies,
    both judged by a scripted judge server, and the endpoint's stories compared pairwise with the directory's."""
    w = workspace
    server = ServerProcess(w / "model", tmp_path / "server.log")

    def judge_replies(method, path, body):  # a chat-only server: no tokenizer routes
        if path != "/v1/chat/completions":
            return 404, {"error": {"message": f"no route {path}"}}, {}
        return 200, chat_reply(GOOD_GRADES if len(body["messages"]) > 2 else "[[C]] Both are fine."), {}

    judge = FakeServer(judge_replies)
    try:
        code = main(["eval", f"local={w / 'model'}", "--endpoint", server.url + "/v1", "--model", "model",
                     "--task", str(w / "pets.yaml"), "--text", str(w / "valid.txt"), "--suite", "safety",
                     "--suite", "stories-judge", "--judge", judge.url + "/v1", "--judge-model", "big",
                     "--limit", "2", "--max-new-tokens", "8", "--max-length", "200",
                     "--report", str(tmp_path / "report"), "--no-progress"])
    finally:
        server.stop()
        judge.close()
    assert code == 0
    results = json.loads((tmp_path / "report" / "results.json").read_text())
    local, served = results["results"]["local"], results["results"]["model"]
    assert served["pets"]["acc"] == local["pets"]["acc"]
    assert served["text"]["bits_per_byte"] == pytest.approx(local["text"]["bits_per_byte"], rel=1e-5)
    assert results["samples"]["model"]["safety"] == results["samples"]["local"]["safety"]  # same greedy replies
    assert local["stories_judge"]["parsed"] == served["stories_judge"]["parsed"] == 2
    assert served["stories_pairwise"]["tie_rate"] == 1.0 and "stories_pairwise" not in local
    assert any(body and body.get("model") == "big" for _, _, _, body in judge.requests)
    assert "safety by category" in capsys.readouterr().out


def test_lm_eval_cli_runs_slmkit_models(workspace, capsys):
    write_rolling_yaml(workspace / "tasks", workspace / "valid.jsonl")
    code = main(["lm-eval", "--model", "slmkit", "--model_args", f"path={workspace / 'model'}", "--tasks",
                 "stories_rolling", "--include_path", str(workspace / "tasks"), "--output_path",
                 str(workspace / "lm-eval-out")])
    assert code == 0
    saved = list((workspace / "lm-eval-out").rglob("results_*.json"))
    metrics = json.loads(saved[0].read_text())["results"]["stories_rolling"]
    capsys.readouterr()
    assert main(["eval", str(workspace / "model"), "--text", str(workspace / "valid.txt"), "--no-progress",
                 "--report", str(workspace / "ours")]) == 0
    ours = json.loads((workspace / "ours" / "results.json").read_text())["results"]["model"]["text"]
    assert metrics["bits_per_byte,none"] == pytest.approx(ours["bits_per_byte"], rel=1e-6)
    assert metrics["word_perplexity,none"] == pytest.approx(ours["word_perplexity"], rel=1e-6)
