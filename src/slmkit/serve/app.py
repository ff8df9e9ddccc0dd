"""The FastAPI application: OpenAI-compatible routes, health, metrics, and the playground.

    GET  /                      the web playground (static page)
    GET  /health                200 while the process is alive
    GET  /ready                 200 once the model is loaded and the scheduler runs; 503 while draining
    GET  /metrics               Prometheus text
    GET  /v1/models             the one served model
    POST /v1/completions        text completion (stream or not)
    POST /v1/chat/completions   chat completion, chat template applied (stream or not)
    GET  /tokenizer_info        the tokenizer's special tokens and chat template (also under /v1/)
    POST /tokenize, /detokenize text <-> token ids with the served tokenizer (also under /v1/)

With an API key set, /v1/*, /metrics and the tokenizer routes need `Authorization: Bearer KEY`.
The completion and tokenizer routes are what lm-eval's local-completions model needs
(tokenizer_backend=remote): token-id prompts, echo + logprobs, and the tokenizer without HF files.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse

from slmkit import __version__
from slmkit.serve import protocol as P
from slmkit.serve.errors import APIError, error_body, install_handlers
from slmkit.serve.logprobs import ChoiceResult, chat_logprobs, legacy_logprobs, prompt_text
from slmkit.serve.middleware import BodyLimit, RequestMetrics
from slmkit.serve.service import COMPLETION_DEFAULT_MAX_TOKENS, Service
from slmkit.serve.tokenizer_routes import add_tokenizer_routes

# How often a non-streamed request checks that its client is still connected (seconds).
DISCONNECT_POLL = 0.5


def create_app(service: Service) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service.start()
        yield
        # Reached after uvicorn stopped accepting and in-flight responses ended (or its timeout passed).
        service.scheduler.shutdown()

    app = FastAPI(title="slmkit server", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.service = service
    install_handlers(app)
    auth = Depends(_require_key(service.config.api_key))
    static = resources.files("slmkit.serve") / "static"

    @app.get("/", include_in_schema=False)
    async def playground():
        return HTMLResponse((static / "index.html").read_text(encoding="utf-8"))

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/ready")
    async def ready():
        if service.ready:
            return {"status": "ready", "model": service.model_name}
        return JSONResponse(error_body(503, "not ready: the server is starting or shutting down"), status_code=503)

    @app.get("/metrics", dependencies=[auth])
    async def metrics():
        return PlainTextResponse(service.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models", dependencies=[auth])
    async def models():
        return {"object": "list", "data": [_model_card(service, served) for served in service.models.values()]}

    @app.get("/v1/models/{model_id}", dependencies=[auth])
    async def model(model_id: str):
        return _model_card(service, service.resolve(model_id))

    @app.post("/v1/completions", dependencies=[auth])
    async def completions(body: P.CompletionRequest, request: Request):
        served = service.resolve(body.model)
        prompts = service.completion_prompts(body, served)
        params = service.sampling_params(body, prompts, COMPLETION_DEFAULT_MAX_TOKENS, served)
        return await _run(service, request, body, prompts, params, served, chat=False)

    @app.post("/v1/chat/completions", dependencies=[auth])
    async def chat_completions(body: P.ChatCompletionRequest, request: Request):
        served = service.resolve(body.model)
        prompts = [service.chat_prompt(body, served)]
        params = service.sampling_params(body, prompts, None, served, extra_stop=service.chat_stop(served))
        return await _run(service, request, body, prompts, params, served, chat=True)

    add_tokenizer_routes(app, service, auth)
    app.add_middleware(BodyLimit, max_bytes=service.config.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=service.metrics)
    return app


def _model_card(service: Service, served) -> dict:
    card = {"id": served.name, "object": "model", "created": service.created, "owned_by": "slmkit",
            "context_length": service.context_len}
    if served.index >= 0:  # an adapter: its base, as vLLM's model list says it
        card["parent"] = service.model_name
    return card


def _require_key(api_key: str | None):
    expected = f"Bearer {api_key}".encode() if api_key else None

    async def check(request: Request) -> None:
        if expected is None:
            return
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            raise APIError(401, "missing or wrong API key: send 'Authorization: Bearer <key>'",
                           code="invalid_api_key")

    return check


async def _run(service: Service, request: Request, body, prompts, params, served, chat: bool) -> Response:
    rid = P.new_id("chatcmpl" if chat else "cmpl")
    created = P.now()
    events, sequences = service.submit(prompts, params, body.n, served)
    prompt_tokens = sum(len(p) for p in prompts)
    echoed = [prompt_text(served.tokenizer, p) for p in prompts] if not chat and body.echo else None
    if body.stream:
        stream = _sse(service, events, sequences, rid, served.name, created, chat, prompt_tokens, body, echoed)
        return StreamingResponse(stream, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    results = [ChoiceResult() for _ in sequences]
    try:
        if not await _collect(events, results, request):
            return Response(status_code=499)  # nobody is listening; sequences are cancelled below
    finally:
        service.cancel(sequences)
    choices = [_choice(index, result, body, prompts[index // body.n], served.tokenizer, chat, echoed)
               for index, result in enumerate(results)]
    use = P.usage(prompt_tokens, sum(r.completion_tokens for r in results))
    build = P.chat_object if chat else P.completion_object
    return JSONResponse(build(rid, served.name, created, choices, use))


async def _collect(events: asyncio.Queue, results: list[ChoiceResult], request: Request) -> bool:
    """Apply events to their choices until all are done; False when the client went away first."""
    remaining = len(results)
    while remaining:
        try:
            event = await asyncio.wait_for(events.get(), DISCONNECT_POLL)
        except asyncio.TimeoutError:
            if await request.is_disconnected():
                return False
            continue
        if event[0] == "error":
            raise APIError(500, event[1], code="generation_failed")
        if results[event[1]].apply(event):
            remaining -= 1
    return True


def _choice(index: int, result: ChoiceResult, body, prompt: list[int], tokenizer, chat: bool,
            echoed: list[str] | None) -> dict:
    choice = {"index": index, "text": result.text, "finish_reason": result.finish_reason}
    if chat:
        if body.logprobs:
            choice["logprobs"] = chat_logprobs(tokenizer, result)
        return choice
    if echoed is not None:
        choice["text"] = echoed[index // body.n] + result.text
    if body.logprobs is not None:
        choice["logprobs"] = legacy_logprobs(tokenizer, prompt, result, body.echo, len(choice["text"]))
    return choice


async def _sse(service: Service, events: asyncio.Queue, sequences, rid: str, model: str, created: int, chat: bool,
               prompt_tokens: int, body, echoed: list[str] | None):
    """Server-sent events: one `data: {chunk}` per text delta, a finish chunk per choice, then [DONE]."""
    remaining, completion_tokens = len(sequences), 0
    try:
        for seq in sequences:
            if chat:
                yield _data(P.chat_chunk(rid, model, created, seq.index, {"role": "assistant", "content": ""}, None))
            elif echoed is not None:
                yield _data(P.completion_chunk(rid, model, created, seq.index, echoed[seq.index // body.n], None))
        while remaining:
            event = await events.get()
            if event[0] == "delta":
                _, index, text = event
                chunk = (P.chat_chunk(rid, model, created, index, {"content": text}, None) if chat
                         else P.completion_chunk(rid, model, created, index, text, None))
                yield _data(chunk)
            elif event[0] == "done":
                _, index, reason, n_tokens = event
                completion_tokens += n_tokens
                remaining -= 1
                chunk = (P.chat_chunk(rid, model, created, index, {}, reason) if chat
                         else P.completion_chunk(rid, model, created, index, "", reason))
                yield _data(chunk)
            elif event[0] == "error":
                yield _data(error_body(500, event[1], code="generation_failed"))
                return
        if body.include_usage:
            yield _data(P.usage_chunk(rid, model, created, chat, P.usage(prompt_tokens, completion_tokens)))
        yield "data: [DONE]\n\n"
    finally:
        # Runs on normal end, on a client disconnect (the generator is cancelled or closed), and on errors.
        service.cancel(sequences)


def _data(obj: dict) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False, separators=(',', ':'))}\n\n"
