"""Request bodies the API accepts (validated by pydantic) and the response objects it returns.

Field names and meanings follow OpenAI's Completions and Chat Completions APIs. Every field that would
change the output is either honoured or refused with a 400 naming it (`REFUSED_FIELDS`: logit_bias,
tools, guided decoding, beam search, ...); fields that do not change the output (user, metadata, ...)
and vendor extensions this server does not know are ignored, as clients send them freely.

`response_format: {"type": "json_object"}` is JSON mode (serve/json_mode.py: constrained decoding);
other response formats (json_schema) are refused.

Completions take up to MAX_COMPLETION_STOPS stop strings (lm-eval sends a task's `until` plus EOS, often
more than OpenAI's 4); chat keeps OpenAI's 4. Log-probs: completions take `logprobs: N` (legacy; with
`echo` the prompt tokens are scored too), chat takes `logprobs: true` + `top_logprobs: N`; N <= MAX_LOGPROBS.
"""

from __future__ import annotations

import time
import uuid
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

MAX_CHAT_STOPS = 4  # OpenAI's limit
MAX_COMPLETION_STOPS = 64
MAX_CHOICES = 8
MAX_LOGPROBS = 20  # OpenAI's limit on top log-probs per position

# Fields that change the output and that this server does not implement: refused unless their value is
# one of the neutral ones listed (what the field means when it is left out).
REFUSED_FIELDS: dict[str, tuple] = {
    "logit_bias": (None, {}),
    "tool_choice": (None, "none", "auto"),
    "functions": (None, []),
    "function_call": (None, "none", "auto"),
    "prediction": (None,),
    "audio": (None,),
    "modalities": (None, ["text"]),
    "web_search_options": (None,),
    # vLLM / Hugging Face extensions
    "min_tokens": (None, 0),
    "use_beam_search": (None, False),
    "num_beams": (None, 1),
    "length_penalty": (None, 1),
    "guided_json": (None,), "guided_regex": (None,), "guided_choice": (None,), "guided_grammar": (None,),
    "structured_outputs": (None,),
    "prompt_logprobs": (None,),
    "allowed_token_ids": (None,),
    "bad_words": (None, []),
    "logits_processors": (None, []),
    "truncate_prompt_tokens": (None,),
    "include_stop_str_in_output": (None, False),
    "skip_special_tokens": (None, True),
    "continue_final_message": (None, False),
    "chat_template": (None,),
    "chat_template_kwargs": (None, {}),
}


def refuse(param: str, message: str) -> PydanticCustomError:
    """A validation error about the whole body that still names its field (errors.py reads ctx['param'])."""
    return PydanticCustomError("value_error", message, {"param": param})


class SamplingFields(BaseModel):
    model_config = ConfigDict(extra="ignore")
    max_stop_strings: ClassVar[int] = MAX_CHAT_STOPS

    model: str | None = None
    max_tokens: int | None = Field(None, ge=0)  # 0 only for a completion with echo (scores the prompt)
    max_completion_tokens: int | None = Field(None, ge=1)  # the chat API's newer name for max_tokens
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=MAX_CHOICES)
    seed: int | None = Field(None, ge=0, lt=2**63)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: dict | None = None
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    response_format: dict | None = None
    # Extensions beyond OpenAI's fields (vLLM accepts the same names).
    top_k: int = Field(0, ge=0)
    min_p: float = Field(0.0, ge=0.0, lt=1.0)
    repetition_penalty: float = Field(1.0, gt=0.0, le=10.0)
    ignore_eos: bool = False  # keep generating past the end-of-text token (benchmarks, tests)
    stop_token_ids: list[int] | None = None  # token ids that end the output, beyond EOS
    user: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _refuse_unsupported(cls, data):
        if isinstance(data, dict):
            for name, neutral in REFUSED_FIELDS.items():
                if name in data and not any(data[name] == v for v in neutral):
                    raise refuse(name, f"{name} is not supported by this server")
        return data

    @field_validator("stop")
    @classmethod
    def _stop(cls, value):
        if value is None:
            return []
        stops = [value] if isinstance(value, str) else value
        if len(stops) > cls.max_stop_strings:
            raise ValueError(f"at most {cls.max_stop_strings} stop strings, got {len(stops)}")
        if any(not s for s in stops):
            raise ValueError("stop strings must not be empty")
        return stops

    @field_validator("response_format")
    @classmethod
    def _response_format(cls, value):
        if value is None or value.get("type") in ("text", "json_object"):
            return value
        raise ValueError(f"type {value.get('type')!r} is not supported by this server (only 'text' and "
                         "'json_object', JSON mode)")

    @property
    def json_mode(self) -> bool:
        return bool(self.response_format) and self.response_format.get("type") == "json_object"

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.get("include_usage"))

    @property
    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


def _check_logprobs_count(value, name: str):
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or not 0 <= value <= MAX_LOGPROBS):
        raise ValueError(f"{name} must be an integer from 0 to {MAX_LOGPROBS}, got {value!r}")
    return value


class CompletionRequest(SamplingFields):
    max_stop_strings: ClassVar[int] = MAX_COMPLETION_STOPS

    prompt: str | list[str] | list[int] | list[list[int]] = Field(
        ..., description="text, a list of texts, token ids, or a list of token-id lists")
    echo: bool = False  # return the prompt before the completion (and its tokens' log-probs)
    logprobs: int | None = None  # legacy: each token's log-prob and the N most likely at its position
    best_of: int | None = None
    suffix: str | None = None

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt(cls, value):
        def ids(x):
            return isinstance(x, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in x)

        if isinstance(value, str):
            return value
        if not isinstance(value, list) or not value:
            raise ValueError("prompt must be a string, a list of strings, a list of token ids or a list of "
                             "token-id lists, and not empty")
        if all(isinstance(x, str) for x in value) or ids(value):
            return value
        if all(ids(x) for x in value):
            empty = [k for k, x in enumerate(value) if not x]
            if empty:
                raise ValueError(f"prompt {empty[0]} is an empty list of token ids")
            return value
        raise ValueError("prompt must be a string, a list of strings, a list of token ids or a list of "
                         "token-id lists (not a mixture)")

    @field_validator("logprobs", mode="before")
    @classmethod
    def _logprobs(cls, value):
        return _check_logprobs_count(value, "logprobs")

    @field_validator("best_of", "suffix")
    @classmethod
    def _unsupported(cls, value, info):
        if value and not (info.field_name == "best_of" and value == 1):
            raise ValueError(f"{info.field_name} is not supported by this server")
        return value

    @model_validator(mode="before")
    @classmethod
    def _chat_only_fields(cls, data):
        if isinstance(data, dict) and data.get("top_logprobs") is not None:
            raise refuse("top_logprobs", "top_logprobs is a chat field; for completions give the count as logprobs")
        return data

    @model_validator(mode="after")
    def _streamed_logprobs(self):
        if self.stream and self.logprobs is not None:
            raise refuse("logprobs", "logprobs with stream is not supported by this server; send stream: false")
        return self

    def prompts(self) -> list[str | list[int]]:
        """The prompts as a list: texts or token-id lists."""
        p = self.prompt
        if isinstance(p, str):
            return [p]
        if all(isinstance(x, int) for x in p):
            return [list(p)]
        return list(p)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[dict] | None = None

    def text(self) -> str:
        """The message's text; content parts other than text are refused."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        parts = []
        for part in self.content:
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise ValueError("only text content parts are supported")
            parts.append(part["text"])
        return "".join(parts)


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(..., min_length=1)
    tools: list | None = None
    logprobs: bool = False  # log-probs of the generated tokens, in `choices[i].logprobs.content`
    top_logprobs: int | None = None  # with logprobs: the N most likely tokens at each position
    add_generation_prompt: bool = True  # vLLM's extension: end the prompt with the assistant's header
    echo: bool = False  # vLLM's extension, refused below

    @field_validator("tools", "echo")
    @classmethod
    def _unsupported(cls, value, info):
        if value:
            raise ValueError(f"{info.field_name} is not supported by this server")
        return value

    @field_validator("logprobs", mode="before")
    @classmethod
    def _logprobs(cls, value):
        if value is not None and not isinstance(value, bool):
            raise ValueError("logprobs must be true or false for chat; give the count as top_logprobs")
        return bool(value)

    @field_validator("top_logprobs", mode="before")
    @classmethod
    def _top_logprobs(cls, value):
        return _check_logprobs_count(value, "top_logprobs")

    @model_validator(mode="after")
    def _logprobs_settings(self):
        if self.top_logprobs is not None and not self.logprobs:
            raise refuse("top_logprobs", "top_logprobs needs logprobs: true")
        if self.stream and self.logprobs:
            raise refuse("logprobs", "logprobs with stream is not supported by this server; send stream: false")
        return self


# ----------------------------------------------------------------------------- responses

def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def completion_object(rid: str, model: str, created: int, choices: list[dict], use: dict) -> dict:
    return {"id": rid, "object": "text_completion", "created": created, "model": model,
            "choices": [{"index": c["index"], "text": c["text"], "logprobs": c.get("logprobs"),
                         "finish_reason": c["finish_reason"]} for c in choices], "usage": use}


def chat_object(rid: str, model: str, created: int, choices: list[dict], use: dict) -> dict:
    return {"id": rid, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": c["index"], "message": {"role": "assistant", "content": c["text"]},
                         "logprobs": c.get("logprobs"), "finish_reason": c["finish_reason"]} for c in choices],
            "usage": use}


def completion_chunk(rid: str, model: str, created: int, index: int, text: str,
                     finish_reason: str | None) -> dict:
    return {"id": rid, "object": "text_completion", "created": created, "model": model,
            "choices": [{"index": index, "text": text, "logprobs": None, "finish_reason": finish_reason}]}


def chat_chunk(rid: str, model: str, created: int, index: int, delta: dict, finish_reason: str | None) -> dict:
    return {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}


def usage_chunk(rid: str, model: str, created: int, chat: bool, use: dict) -> dict:
    """The last chunk when stream_options.include_usage is set: no choices, only usage."""
    return {"id": rid, "object": "chat.completion.chunk" if chat else "text_completion", "created": created,
            "model": model, "choices": [], "usage": use}
