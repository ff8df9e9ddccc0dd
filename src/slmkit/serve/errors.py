"""Errors in OpenAI's JSON shape, so OpenAI clients raise their own typed exceptions.

    {"error": {"message": "...", "type": "invalid_request_error", "param": "max_tokens", "code": null}}

The status decides the client's exception: 400 BadRequestError, 401 AuthenticationError,
404 NotFoundError, 413 (APIStatusError), 429 RateLimitError, 500 InternalServerError.
A 500 body never carries a traceback; the traceback goes to the server log.
"""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

log = logging.getLogger("slmkit.serve")

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
               405: "invalid_request_error", 413: "invalid_request_error", 429: "rate_limit_error",
               500: "server_error", 503: "server_error"}


class APIError(Exception):
    """An error a route raises; rendered as OpenAI's error object with `status`."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 type: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.type = type or ERROR_TYPES.get(status, "invalid_request_error")


def error_body(status: int, message: str, param: str | None = None, code: str | None = None,
               type: str | None = None) -> dict:
    return {"error": {"message": message, "type": type or ERROR_TYPES.get(status, "invalid_request_error"),
                      "param": param, "code": code}}


def error_response(status: int, message: str, param: str | None = None, code: str | None = None,
                   headers: dict | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, param, code), status_code=status, headers=headers)


def error_bytes(status: int, message: str, code: str | None = None) -> bytes:
    """The same body as bytes, for raw ASGI middleware."""
    return json.dumps(error_body(status, message, code=code)).encode()


def install_handlers(app: FastAPI) -> None:
    """Make every error path (ours, FastAPI's validation, routing, unexpected exceptions) speak OpenAI."""

    @app.exception_handler(APIError)
    async def _api_error(request: Request, e: APIError):
        return JSONResponse(error_body(e.status, e.message, e.param, e.code, e.type), status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, e: RequestValidationError):
        return _validation_response(e.errors())

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException):
        message = e.detail if isinstance(e.detail, str) else "request failed"
        if e.status_code == 404:
            message = f"no route {request.method} {request.url.path}"
        return error_response(e.status_code, message, headers=getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def _internal(request: Request, e: Exception):
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error_response(500, "internal server error (details are in the server log)", code="internal_error")


def _validation_response(errors) -> JSONResponse:
    """400 naming the first bad field; malformed JSON gets its own message."""
    first = errors[0] if errors else {}
    location = [str(p) for p in first.get("loc", ()) if p != "body"]
    if first.get("type") == "json_invalid":
        return error_response(400, "request body is not valid JSON: " + str(first.get("ctx", {}).get("error", "")).strip(),
                              code="invalid_json")
    param = ".".join(location) or (first.get("ctx") or {}).get("param")  # a whole-body check names its field
    message = first.get("msg", "invalid request")
    if param and not message.startswith(param):
        message = f"{param}: {message}"
    return error_response(400, message, param=param, code="invalid_value")
