"""EndpointClient against our own `slm serve` (scores and replies equal the in-process scorer's and generator's,
run_evaluation takes it as a scorer) and against scripted fake servers (a wrong number of log-probs, retries on
503 / 429, a 400 in one line, the max_tokens 1 fallback, the Bearer header)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from slmkit.errors import DataError
from slmkit.eval.endpoint import EndpointClient, EndpointError
from slmkit.eval.evaluation_run import ModelToEvaluate, run_evaluation
from slmkit.eval.generation import LocalGenerator
from slmkit.eval.loglikelihood import LoglikelihoodScorer
from slmkit.loading import load_for_inference
from tests.eval.test_harness import PETS, PETS_YAML, write_task
from tests.serve.conftest import ServerProcess, free_port
from tests.serve.tiny_run import make_tiny_run

API_KEY = "endpoint-key"
PAIRS = [("Once upon a time there was", " a little cat"), ("The dog ran to the ", "park"),
         ("Lily said hello to her friend", " Tom. They played"), ("Café, naïve, ", "世界 and 🙂"),
         ("", "Once upon a time"), ("The cat", " liked to play"), ("The cat", " ran")]
DOCUMENTS = ["The dog ran to the park and found a red ball under a big tree. " * 3,
             "Lily said hello to her friend Tom.", "", "Café, naïve, 世界, and 🙂 are words beyond ASCII. " * 2]


@pytest.fixture(scope="module")
def served_run(tmp_path_factory):
    return make_tiny_run(tmp_path_factory.mktemp("endpoint") / "tiny")


@pytest.fixture(scope="module")
def server(served_run, tmp_path_factory):
    proc = ServerProcess(served_run, tmp_path_factory.mktemp("logs") / "server.log", "--api-key", API_KEY)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def local(served_run):
    model, tokenizer, eos_ids = load_for_inference(served_run)
    return model, tokenizer, eos_ids


def client_for(server, served_run, **kwargs) -> EndpointClient:
    return EndpointClient(server.url + "/v1", served_run.name, api_key=API_KEY, concurrency=2, batch_size=3,
                          **kwargs)


# ------------------------------------------------------------------------------------ our own server

def test_settings_come_from_the_server(server, served_run, local):
    _, tokenizer, _ = local
    client = client_for(server, served_run)
    assert client.max_length == 256 - 2  # the served window, less the input shift and one generated token
    assert client_for(server, served_run, max_length=100).max_length == 100
    assert client.prefix_id == tokenizer.eos_id
    assert client.encode("Once upon a time") == tokenizer.encode("Once upon a time")


def test_loglikelihood_equals_the_in_process_scorer(server, served_run, local):
    model, tokenizer, _ = local
    client = client_for(server, served_run)
    long_context = ("The dog ran to the park. " * 20, " Lily said hello")  # beyond a 30-token window: truncated
    requests = PAIRS + [long_context]
    for scorer, remote in ((LoglikelihoodScorer(model, tokenizer), client),
                           (LoglikelihoodScorer(model, tokenizer, max_length=30), client_for(server, served_run,
                                                                                              max_length=30))):
        expected = scorer.loglikelihood(requests)
        got = remote.loglikelihood(requests)
        for request, e, g in zip(requests, expected, got):
            assert g.logprob == pytest.approx(e.logprob, abs=1e-4), request
            assert (g.is_greedy, g.tokens) == (e.is_greedy, e.tokens), request
    assert client._scoring_max_tokens == 0  # our server scores with max_tokens 0


def test_the_models_own_greedy_token_is_greedy(server, served_run, local):
    model, tokenizer, eos_ids = local
    generator = LocalGenerator(model, tokenizer, eos_ids).generator
    requests = []
    for context in ("Once upon a time", "The dog ran", "Lily said", "They played together"):
        greedy = generator.generate(context, max_new_tokens=1, temperature=0, ignore_eos=True).token_ids
        requests.append((tokenizer.encode(context), greedy))
    assert all(s.is_greedy for s in client_for(server, served_run).score_tokens(requests))


def test_rolling_equals_the_in_process_scorer(server, served_run, local):
    model, tokenizer, _ = local
    client = client_for(server, served_run, max_length=24)  # several windows per document
    scorer = LoglikelihoodScorer(model, tokenizer, max_length=24)
    expected, got = scorer.loglikelihood_rolling(DOCUMENTS), client.loglikelihood_rolling(DOCUMENTS)
    assert got == pytest.approx(expected, abs=1e-4) and got[2] == 0.0
    expected_totals, totals = scorer.rolling_totals(DOCUMENTS), client.rolling_totals(DOCUMENTS)
    assert (totals.tokens, totals.bytes, totals.words, totals.documents) == (
        expected_totals.tokens, expected_totals.bytes, expected_totals.words, expected_totals.documents)
    assert totals.bits_per_byte == pytest.approx(expected_totals.bits_per_byte, rel=1e-6)


def test_chat_replies_equal_the_local_generator(server, served_run, local):
    model, tokenizer, eos_ids = local
    conversations = [[{"role": "user", "content": "Tell me about a cat."}],
                     [{"role": "system", "content": "You tell stories."}, {"role": "user", "content": "A dog?"}],
                     [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                      {"role": "user", "content": "Once upon a time"}]]
    local_generator = LocalGenerator(model, tokenizer, eos_ids)
    expected = local_generator.chat(conversations, max_new_tokens=12)
    assert client_for(server, served_run).chat(conversations, max_new_tokens=12) == expected
    assert client_for(server, served_run).chat([]) == []
    story = local_generator.generator.generate("Once upon a time", max_new_tokens=8, temperature=0).text
    assert client_for(server, served_run).complete(["Once upon a time"], max_new_tokens=8) == [story]


def test_run_evaluation_takes_the_client_as_a_scorer(server, served_run, local, tmp_path):
    model, tokenizer, _ = local
    spec, docs = write_task(tmp_path, PETS_YAML, PETS)
    text = [d for d in DOCUMENTS if d]
    remote = run_evaluation([ModelToEvaluate("remote", scorer=client_for(server, served_run))], [(spec, docs)],
                            text, progress=False)
    in_process = run_evaluation([ModelToEvaluate("local", model, tokenizer)], [(spec, docs)], text, progress=False)
    for task in ("pets", "text"):
        assert remote.results["remote"][task] == pytest.approx(in_process.results["local"][task], rel=1e-5)
    assert remote.models[0]["parameters"] is None


def test_server_errors_are_endpoint_errors(server, served_run):
    with pytest.raises(EndpointError, match="API key") as raised:
        EndpointClient(server.url + "/v1", served_run.name, api_key="wrong").chat([[{"role": "user", "content": "x"}]])
    assert raised.value.status == 401
    with pytest.raises(EndpointError, match="does not exist"):
        EndpointClient(server.url + "/v1", "no-such-model", api_key=API_KEY).loglikelihood(PAIRS[:1])
    with pytest.raises(DataError, match="continuation is empty"):
        client_for(server, served_run).loglikelihood([("The cat", "")])


# ------------------------------------------------------------------------------------ fake servers

class FakeServer:
    """An HTTP server in a thread whose answers come from `respond(method, path, body) -> (status, object,
    headers)`; every request is kept as (method, path, headers, body)."""

    def __init__(self, respond):
        self.requests: list[tuple[str, str, dict, dict | None]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                fake.requests.append((self.command, self.path, dict(self.headers), body))
                status, obj, headers = respond(self.command, self.path.split("?")[0], body)
                data = (obj if isinstance(obj, str) else json.dumps(obj)).encode()
                self.send_response(status)
                for key, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def fake_server():
    servers = []

    def start(respond) -> FakeServer:
        servers.append(FakeServer(respond))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def tokenizer_routes(method: str, path: str, body):
    """/tokenizer_info and /tokenize of a fake character tokenizer (ids 1..50), at the server's root."""
    if path == "/tokenizer_info":
        return 200, {"eos_token": "<eos>", "eos_token_id": 0, "model_max_length": 64}, {}
    if path == "/tokenize":  # a chat is its contents, one token per character
        text = body["prompt"] if "prompt" in body else "".join(m["content"] for m in body["messages"])
        return 200, {"tokens": [ord(ch) % 50 + 1 for ch in text]}, {}
    return None


def echoed_choices(prompts: list[list[int]], generated: int) -> list[dict]:
    """Every prompt token at log-prob -0.5 (the first null), then `generated` tokens at -9."""
    return [{"index": k, "text": "", "finish_reason": "length",
             "logprobs": {"token_logprobs": [None] + [-0.5] * (len(p) - 1) + [-9.0] * generated,
                          "top_logprobs": [None] + [{"x": -0.5}] * (len(p) - 1) + [{"y": -1.0}] * generated}}
            for k, p in enumerate(prompts)]


def chat_reply(text: str) -> dict:
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}


def test_a_wrong_number_of_logprobs_is_a_clear_error(fake_server):
    def respond(method, path, body):
        if path == "/v1/completions":  # llama.cpp-style: only the generated token's log-prob
            return 200, {"choices": [{"index": k, "text": "", "logprobs": {"token_logprobs": [-1.0],
                                      "top_logprobs": [{"a": -1.0}]}} for k in range(len(body["prompt"]))]}, {}
        return tokenizer_routes(method, path, body) or (404, {"error": {"message": "no route"}}, {})

    server = fake_server(respond)
    with pytest.raises(EndpointError, match=r"returned 1 token log-probs for a prompt of \d+ tokens"):
        EndpointClient(server.url + "/v1", "m").loglikelihood([("The cat", " sat")])


def test_a_server_refusing_max_tokens_0_is_scored_with_1(fake_server):
    def respond(method, path, body):
        if path == "/v1/completions":
            if body["max_tokens"] == 0:
                return 400, {"error": {"message": "max_tokens must be at least 1", "param": "max_tokens"}}, {}
            assert body["echo"] is True and body["logprobs"] == 1 and isinstance(body["prompt"][0], list)
            return 200, {"choices": echoed_choices(body["prompt"], 1)}, {}
        return tokenizer_routes(method, path, body)

    server = fake_server(respond)
    client = EndpointClient(server.url + "/v1", "m", batch_size=2)
    scored = client.loglikelihood([("ab", "cd"), ("", "xyz"), ("a", "b"), ("abc ", "d")])
    assert [(s.logprob, s.is_greedy, s.tokens) for s in scored] == [
        (-1.0, True, 2), (-1.5, True, 3), (-0.5, True, 1), (-1.0, True, 2)]  # the generated -9 is dropped
    assert client._scoring_max_tokens == 1 and client.max_length == 62
    prompts = [b["prompt"] for m, p, _, b in server.requests if p == "/v1/completions" and b["max_tokens"] == 1]
    assert prompts[0][1][0] == 0  # the empty context is the end-of-text id from /tokenizer_info


def test_settings_from_v1_models_and_an_eos_given_as_text(fake_server):
    def respond(method, path, body):
        if path == "/tokenizer_info":  # no id and no length: the eos text is tokenized, /v1/models read
            return 200, {"eos_token": "<eos>"}, {}
        if path == "/tokenize" and body["prompt"] == "<eos>":
            return 200, {"tokens": [0]}, {}
        if path == "/v1/models":
            return 200, {"data": [{"id": "other", "max_model_len": 8}, {"id": "m", "max_model_len": 32}]}, {}
        return tokenizer_routes(method, path, body)

    client = EndpointClient(fake_server(respond).url + "/v1", "m")
    assert (client.max_length, client.prefix_id) == (30, 0)


def test_a_server_without_tokenizer_routes_says_so(fake_server):
    server = fake_server(lambda method, path, body: (404, {"detail": "Not Found"}, {}))
    with pytest.raises(EndpointError, match="does not offer the tokenizer routes"):
        EndpointClient(server.url + "/v1", "m").loglikelihood_rolling(["some text"])


def test_503_twice_then_success_is_retried(fake_server):
    answers = iter([(503, {"error": {"message": "warming up"}}, {}),
                    (429, {"error": {"message": "queue full"}}, {"Retry-After": "0"}),
                    (200, chat_reply(" Once upon a time. "), {})])

    def respond(method, path, body):  # a chat-only server: the window probe finds no tokenizer routes
        return next(answers) if path == "/v1/chat/completions" else (404, {"detail": "Not Found"}, {})

    server = fake_server(respond)
    client = EndpointClient(server.url + "/v1", "m", retry_backoff=0.01)
    assert client.chat([[{"role": "user", "content": "Tell me a story."}]], max_new_tokens=5) == ["Once upon a time."]
    assert [path for _, path, _, _ in server.requests] == ["/tokenizer_info?model=m"] + ["/v1/chat/completions"] * 3
    body = server.requests[-1][3]
    assert body["max_tokens"] == 5 and body["model"] == "m" and body["temperature"] == 0.0


def test_retries_run_out_with_the_last_failure(fake_server):
    server = fake_server(lambda method, path, body: (503, {"error": {"message": "still warming up"}}, {}))
    with pytest.raises(EndpointError, match="after 2 attempts: HTTP 503: still warming up"):
        EndpointClient(server.url + "/v1", "m", max_retries=1, retry_backoff=0.01).chat([[{"role": "user",
                                                                                             "content": "x"}]])
    with pytest.raises(EndpointError, match="after 2 attempts"):  # nothing listens there
        EndpointClient(f"http://127.0.0.1:{free_port()}/v1", "m", max_retries=1, retry_backoff=0.01).chat(
            [[{"role": "user", "content": "x"}]])


def test_a_400_is_one_line_with_the_servers_message(fake_server):
    message = "this model's context window is 64 tokens,\nbut the prompt has 80 tokens; shorten the prompt"
    server = fake_server(lambda method, path, body: (400, {"error": {"message": message, "type": "x"}}, {}))
    with pytest.raises(EndpointError) as raised:
        EndpointClient(server.url + "/v1", "m").chat([[{"role": "user", "content": "x"}]])
    text = str(raised.value)
    assert "\n" not in text and "HTTP 400" in text and "context window is 64 tokens, but the prompt" in text
    assert raised.value.status == 400 and len(server.requests) == 1  # a 4xx is not retried


def test_the_api_key_is_sent_as_a_bearer_header(fake_server):
    def respond(method, path, body):
        if path == "/v1/chat/completions":
            return 200, chat_reply("hi"), {}
        return tokenizer_routes(method, path, body)

    server = fake_server(respond)
    client = EndpointClient(server.url + "/v1", "m", api_key="sekrit")
    client.chat([[{"role": "user", "content": "x"}]])
    assert client.prefix_id == 0  # a GET to /tokenizer_info, at the root (base_url without /v1)
    assert [r[1] for r in server.requests] == ["/tokenizer_info?model=m", "/tokenize", "/v1/chat/completions"]
    assert all(r[2].get("Authorization") == "Bearer sekrit" for r in server.requests)
    EndpointClient(server.url + "/v1", None).chat([[{"role": "user", "content": "x"}]])
    assert "Authorization" not in server.requests[-1][2] and "model" not in server.requests[-1][3]


def test_a_conversation_too_long_for_the_window_loses_its_start(fake_server):
    def respond(method, path, body):
        if path == "/v1/chat/completions":
            return 200, chat_reply("ok"), {}
        return tokenizer_routes(method, path, body)  # a 64-token window, one token per character

    server = fake_server(respond)
    client = EndpointClient(server.url + "/v1", "m")
    question = "What is the capital of France?"
    long_chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "x" * 200 + question}]
    assert client.chat([long_chat], max_new_tokens=30) == ["ok"]
    sent = server.requests[-1][3]
    assert sent["messages"][0] == long_chat[0] and sent["messages"][1]["content"].endswith(question)
    count = sum(len(m["content"]) for m in sent["messages"])
    assert count <= 64 - 16 and sent["max_tokens"] == min(30, 64 - count)  # reserve: a quarter of the window
    client.chat([[{"role": "user", "content": "Hi."}]], max_new_tokens=30)
    assert server.requests[-1][3]["max_tokens"] == 30  # a short chat is sent as it is
