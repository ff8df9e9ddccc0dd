"""The tokenizer over HTTP, as vLLM offers it (`--enable-tokenizer-info-endpoint`), so a client needs no
tokenizer files of its own: lm-eval's `tokenizer_backend=remote` (lm_eval/utils.py RemoteTokenizer).

    GET  /tokenizer_info        {"eos_token", "bos_token", "pad_token", "chat_template", ...}
    POST /tokenize              {"prompt": str} or {"messages": [...]}  ->  {"tokens": [int], "count", "max_model_len"}
    POST /detokenize            {"tokens": [int]}  ->  {"prompt": str}

Each also answers under /v1/. A `model` field (a query parameter for GET) picks the served model's
tokenizer when the server routes adapters; none names the base. Text is encoded exactly as the
completion routes encode it (special-token text becomes its id); this tokenizer adds no BOS/EOS, so
`add_special_tokens` changes nothing. A model without a chat template gets the plain transcript the
chat route renders, written as the equivalent Jinja template.
"""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from slmkit.errors import TokenizerError
from slmkit.serve.errors import APIError
from slmkit.serve.protocol import ChatMessage
from slmkit.tokenizer.chat_template import render_chat

# render_chat's transcript for a tokenizer without a template ("User: ...\nAssistant:"), as Jinja.
TRANSCRIPT_TEMPLATE = (
    "{%- set names = {'user': 'User', 'assistant': 'Assistant', 'system': 'System'} -%}"
    "{%- for message in messages -%}"
    "{%- if not loop.first %}{{ '\\n' }}{% endif -%}"
    "{{ names.get(message['role'], message['role'] | title) }}: {{ message['content'] }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt %}{{ '\\nAssistant:' }}{% endif -%}"
)


class TokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    prompt: str | None = None
    messages: list[ChatMessage] | None = Field(None, min_length=1)
    add_special_tokens: bool = True  # nothing to add: this tokenizer has no BOS/EOS it inserts itself
    add_generation_prompt: bool = True  # with messages: end with the assistant's header, as chat does


class DetokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    tokens: list[int]


def add_tokenizer_routes(app: FastAPI, service, auth) -> None:
    def tokenizer_of(model_id: str | None):
        served = service.resolve(model_id)
        if served.tokenizer is None:
            raise APIError(400, f"the model '{served.name}' has no tokenizer", param="model")
        return served, served.tokenizer

    async def tokenizer_info(model: str | None = None):
        served, tok = tokenizer_of(model)
        return {"eos_token": tok.eos_token, "eos_token_id": tok.eos_id, "bos_token": None, "bos_token_id": None,
                "pad_token": None, "pad_token_id": None, "add_bos_token": False,
                "chat_template": tok.chat_template or TRANSCRIPT_TEMPLATE,
                "model_max_length": service.context_len, "vocab_size": served.vocab_size,
                "special_tokens": dict(tok.special_tokens), "tokenizer_class": "slmkit.tokenizer.Tokenizer"}

    async def tokenize(body: TokenizeRequest):
        _, tok = tokenizer_of(body.model)
        if (body.prompt is None) == (body.messages is None):
            raise APIError(400, "give exactly one of prompt (text) or messages (a chat)", param="prompt")
        text = body.prompt
        if body.messages is not None:
            try:
                messages = [{"role": m.role, "content": m.text()} for m in body.messages]
            except ValueError as e:
                raise APIError(400, str(e), param="messages") from None
            text = render_chat(tok, messages, body.add_generation_prompt)
        tokens = tok.encode(text, allowed_special="all")
        return {"tokens": tokens, "count": len(tokens), "max_model_len": service.context_len}

    async def detokenize(body: DetokenizeRequest):
        _, tok = tokenizer_of(body.model)
        try:
            return {"prompt": tok.decode(body.tokens)}
        except TokenizerError as e:  # an id the tokenizer has no text for
            raise APIError(400, str(e), param="tokens") from None

    for prefix in ("", "/v1"):
        app.add_api_route(prefix + "/tokenizer_info", tokenizer_info, methods=["GET"], dependencies=[auth])
        app.add_api_route(prefix + "/tokenize", tokenize, methods=["POST"], dependencies=[auth])
        app.add_api_route(prefix + "/detokenize", detokenize, methods=["POST"], dependencies=[auth])
