"""`slm serve BASE --adapter NAME=DIR ...`: one server, the base and each adapter as its own model id;
concurrent requests for different adapters (sharing the decode batch) answer what each adapter
answers when loaded alone; unknown ids are 404s and bad --adapter options are one-line errors."""

import concurrent.futures

import httpx
import pytest

from slmkit.cli import main
from slmkit.finetune.loading import load_for_use
from slmkit.finetune.run import finetune
from slmkit.infer.generator import Generator
from slmkit.loading import load_for_inference
from slmkit.tokenizer.chat_template import render_chat
from tests.finetune.tiny_workspace import finetune_config, make_workspace, quiet
from tests.serve.conftest import ServerProcess, metric

PROMPT = "Once upon a time, Lily"


@pytest.fixture(scope="module")
def adapter_server(tmp_path_factory):
    root = make_workspace(tmp_path_factory.mktemp("adapters"))
    finetune(finetune_config(root, "lora", root / "chat"), log=quiet)
    finetune(finetune_config(root, "lora", root / "qv", "lora.dora=true", "lora.targets=[q_proj,v_proj]",
                             "train.seed=1", "train.lr=5e-2", "lora.alpha=64"), log=quiet)  # a strong change
    proc = ServerProcess(root / "base", root / "server.log", "--max-batch", "4", "--adapter", f"chat={root / 'chat'}",
                         "--adapter", f"qv={root / 'qv'}")
    yield root, proc
    proc.stop()


def _alone(root, model_id):
    if model_id == "base":
        return Generator(*load_for_inference(root / "base"))
    return Generator(*load_for_use(root / model_id, merge=False))


def test_models_lists_the_base_and_its_adapters(adapter_server):
    root, proc = adapter_server
    data = httpx.get(proc.url + "/v1/models").json()["data"]
    assert [(m["id"], m.get("parent")) for m in data] == [("base", None), ("chat", "base"), ("qv", "base")]
    assert httpx.get(proc.url + "/v1/models/qv").json()["parent"] == "base"
    assert "with adapters chat, qv" in proc.output()


def test_concurrent_requests_get_their_own_adapter(adapter_server):
    root, proc = adapter_server
    TOKENS = 64

    def complete(model_id):  # long enough that four requests sent together overlap even on a loaded machine
        body = {"model": model_id, "prompt": PROMPT, "max_tokens": TOKENS, "temperature": 0, "ignore_eos": True}
        r = httpx.post(proc.url + "/v1/completions", json=body, timeout=60)
        assert r.status_code == 200, r.text
        return r.json()

    ids = ["chat", "base", "qv", "chat"]
    steps, rows = metric(proc.url, "slm_decode_batch_size_count"), metric(proc.url, "slm_decode_batch_size_sum")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(complete, ids))
    steps, rows = metric(proc.url, "slm_decode_batch_size_count") - steps, metric(proc.url, "slm_decode_batch_size_sum") - rows
    assert rows / steps > 1.5  # the adapters' requests shared decode steps
    for model_id, answer in zip(ids, answers):
        expected = _alone(root, model_id).generate(PROMPT, max_new_tokens=TOKENS, temperature=0, ignore_eos=True).text
        assert answer["model"] == model_id and answer["choices"][0]["text"] == expected, model_id
    assert len({a["choices"][0]["text"] for a in answers}) == 3


def test_chat_uses_the_adapters_template(adapter_server):
    root, proc = adapter_server
    messages = [{"role": "user", "content": "Tell me a story about a cat."}]
    body = {"model": "chat", "messages": messages, "max_tokens": 10, "temperature": 0}
    answer = httpx.post(proc.url + "/v1/chat/completions", json=body, timeout=60).json()
    alone = _alone(root, "chat")
    assert "<|im_start|>" in render_chat(alone.tokenizer, messages)
    expected = alone.generate(render_chat(alone.tokenizer, messages), max_new_tokens=10, temperature=0)
    assert answer["choices"][0]["message"]["content"] == expected.text


def test_tokenizer_routes_pick_the_adapters_tokenizer(adapter_server):
    root, proc = adapter_server
    alone = _alone(root, "chat")
    messages = [{"role": "user", "content": "Tell me a story about a cat."}]
    info = httpx.get(proc.url + "/tokenizer_info", params={"model": "chat"}).json()
    assert info["chat_template"] == alone.tokenizer.chat_template and info["eos_token"] == alone.tokenizer.eos_token
    assert httpx.get(proc.url + "/tokenizer_info").json()["chat_template"] != info["chat_template"]  # the base's
    r = httpx.post(proc.url + "/tokenize", json={"model": "chat", "messages": messages}).json()
    assert r["tokens"] == alone.tokenizer.encode(render_chat(alone.tokenizer, messages))
    assert httpx.get(proc.url + "/tokenizer_info", params={"model": "nope"}).status_code == 404


def test_an_unknown_model_id_is_a_404_naming_the_served_ones(adapter_server):
    _, proc = adapter_server
    r = httpx.post(proc.url + "/v1/completions", json={"model": "nope", "prompt": "Hi", "max_tokens": 2})
    assert r.status_code == 404 and "'base', 'chat', 'qv'" in r.json()["error"]["message"]
    assert httpx.get(proc.url + "/v1/models/nope").status_code == 404


def test_bad_adapter_options_are_one_line_errors(adapter_server, capsys):
    root, _ = adapter_server
    with pytest.raises(SystemExit):
        main(["serve", str(root / "base"), "--adapter", "no-equals-sign"])
    assert "expected NAME=DIR" in capsys.readouterr().err
    cases = [(["--adapter", f"base={root / 'chat'}"], "already taken (the base)"),
             (["--adapter", f"a={root / 'chat'}", "--adapter", f"a={root / 'qv'}"], "already taken (another adapter)"),
             (["--adapter", f"a={root / 'missing'}"], "no such directory"),
             (["--adapter", f"a={root / 'tok'}"], "neither an slmkit adapter")]
    for extra, message in cases:
        assert main(["serve", str(root / "base"), "--port", "1", *extra]) == 1
        assert message in capsys.readouterr().err
    assert main(["serve", str(root / "chat"), "--adapter", f"a={root / 'qv'}"]) == 1
    assert "is an adapter; with --adapter, RUN is the base" in capsys.readouterr().err
