"""The HTTP API: OpenAI's audio endpoints, our alignment endpoint, models, health, metrics.

``POST /v1/audio/transcriptions``, ``/v1/audio/translations`` and ``/v1/audio/speech`` take the
fields OpenAI's API takes, so its clients work unchanged; ``POST /v1/audio/alignments`` (ours)
aligns an uploaded file to a transcript; ``GET /v1/models`` gives each served model's
``source``: the name it was loaded by, its repository and resolved commit, its hub. Every model
computation goes through one :class:`~polyspeech.serve.batching.DynamicBatcher`, so concurrent
requests are computed in batches on one worker thread. Errors come back in OpenAI's shape,
``{"error": {"message", "type", "param", "code"}}``: 400 for a bad field, 401 for a wrong API key,
404 for a model not served, 413 for an upload or audio over the limits, 415 for a file that is
not audio, 503 (with Retry-After) when the queue is full, 504 past the request time limit. A
client's mistake is answered naming the request's field (``language``, ``voice``), never a path
or a command-line option of the server's. Requests name models only by the names the server was
started with and send audio only as uploads: nothing in a request makes the server read a path
of its own. A body is read only up to ``max_upload_mb``, whether or not it has a Content-Length.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from polyspeech.ctc.decode import language_model_file
from polyspeech.ctc.model import NO_LM
from polyspeech.errors import InputError
from polyspeech.serve.api import (
    ESPEAK,
    ApiError,
    Metrics,
    ServeSettings,
    bad,
    error_response,
    served_kind,
)
from polyspeech.serve.routes import router
from polyspeech.serve.served import Served

log = logging.getLogger(__name__)


class _OverLimit(Exception):
    """The body being read has crossed the upload limit."""


def _authorised(header: str, keys: list[str]) -> bool:
    """``Authorization: Bearer KEY`` with one of ``keys``: the scheme is required, as OpenAI's
    API requires it."""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    given = token.strip().encode()
    return any(hmac.compare_digest(given, key.encode()) for key in keys)


class Guard:
    """ASGI middleware around the app: API keys, the upload limit, metrics, one log line for a
    client that hangs up, and a 500 in OpenAI's shape for anything unforeseen.

    The limit holds while the body is read, so a chunked upload (no Content-Length) is cut off
    once it crosses the limit instead of being read to its end first."""

    def __init__(self, app, settings: ServeSettings, metrics: Metrics) -> None:
        self.app, self.settings, self.metrics = app, settings, metrics

    def too_big(self, size: int | None) -> ApiError:
        # the connection stays open: uvicorn drops the rest of the body unread, and a client
        # still sending reads the 413 (closing would reset the connection under its feet)
        limit = f"{self.settings.max_upload_mb:g} MB"
        sent = "" if size is None else f" {size / 2**20:.1f} MB,"
        message = f"the upload is{sent} over the limit of {limit}"
        return ApiError(413, message, "invalid_request_error", "file")

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        endpoint = scope["path"]
        limit = self.settings.max_upload_mb * 2**20
        status: int | None = None
        received = 0

        async def counted_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _OverLimit
            return message

        async def noted_send(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        outcome: ApiError | None = None
        label = None  # the metrics' status, where not the one answered
        try:
            headers = Headers(scope=scope)
            keys = self.settings.api_keys
            if keys and endpoint.startswith("/v1/"):
                if not _authorised(headers.get("authorization", ""), keys):
                    raise ApiError(401, "invalid or missing API key: send Authorization: "
                                   "Bearer KEY", "invalid_request_error", code="invalid_api_key",
                                   headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
            length = headers.get("content-length")
            if length is not None and int(length) > limit:
                raise self.too_big(int(length))
            await self.app(scope, counted_receive, noted_send)
        except ApiError as error:
            outcome = error
        except _OverLimit:
            outcome = self.too_big(None)
        except ClientDisconnect:
            label = "disconnected"
            log.warning("%s %s: the client hung up before its request was read", scope["method"],
                        endpoint)  # fmt: skip
        except Exception:
            log.exception("request to %s failed", endpoint)
            outcome = ApiError(500, "internal error", "server_error")
        if outcome is not None and status is None:
            await error_response(outcome)(scope, receive, noted_send)
        if endpoint != "/metrics":
            self.metrics.requests.labels(endpoint, label or str(status)).inc()
            self.metrics.seconds.labels(endpoint).observe(time.monotonic() - started)


def load_served(spec: str, device: str = "cpu", dtype: str = "auto") -> tuple[str, Any]:
    """``NAME=MODEL`` or ``MODEL`` (then named by itself): a CTC model, a speech LLM, or an
    MMS-TTS voice; a folder, a builtin name or a published model's id."""
    from polyspeech import load
    from polyspeech.hub import resolve_model

    name, _, model = spec.rpartition("=")
    name = name or model
    source = resolve_model(model)
    config = source.folder / "config.json"
    if config.is_file() and json.loads(config.read_text()).get("model_type") == "vits":
        from polyspeech.tts.vits import VitsVoice

        return name, VitsVoice(source)
    return name, load(source, device=device, dtype=dtype)


def create_app(models: dict[str, Any], settings: ServeSettings | None = None):
    """The FastAPI app serving ``models`` (name -> loaded model): the routes of
    :mod:`polyspeech.serve.routes` over a :class:`Served`, behind a :class:`Guard`."""
    served = Served(models, settings or ServeSettings())

    @asynccontextmanager
    async def lifespan(app):
        served.batcher.start()
        yield
        await served.batcher.stop()

    app = FastAPI(title="polyspeech", lifespan=lifespan)
    app.add_middleware(Guard, settings=served.settings, metrics=served.metrics)
    app.state.served = served
    app.include_router(router)

    @app.exception_handler(ApiError)
    async def on_api_error(request: Request, error: ApiError):
        return error_response(error)

    @app.exception_handler(HTTPException)
    async def on_http_error(request: Request, error: HTTPException):
        """Starlette's own refusals (no such route, a malformed multipart body) in OpenAI's
        shape too."""
        kind = "server_error" if error.status_code >= 500 else "invalid_request_error"
        return error_response(
            ApiError(error.status_code, str(error.detail), kind, headers=error.headers)
        )

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, error: RequestValidationError):
        problem = error.errors()[0]
        param = str(problem["loc"][-1]) if problem.get("loc") else None
        return error_response(bad(f"{param}: {problem['msg']}", param))

    return app


def check_served(models: dict[str, Any], lm: str = NO_LM) -> None:
    """Fail before serving: a reserved name, no model, or ``lm`` lacking a served CTC
    model's language."""
    if ESPEAK in models:
        raise InputError(
            f"the model name {ESPEAK!r} is the server's espeak-ng voice; choose another"
        )
    if not models:
        raise InputError("give at least one --model")
    if lm != NO_LM:
        for model in models.values():
            if served_kind(model) == "ctc":
                for lang in model.languages or [None]:
                    language_model_file(lm, lang)
