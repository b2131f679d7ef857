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

import asyncio
import hmac
import io
import json
import logging
import time
import zlib
from collections.abc import Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.datastructures import Headers, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from polyspeech.align.transcript import UNIVERSAL
from polyspeech.ctc.decode import language_model_file
from polyspeech.ctc.model import NO_LM
from polyspeech.errors import AudioTooLong, InputError
from polyspeech.options import TranscribeOptions
from polyspeech.serve.batching import DynamicBatcher, Overloaded
from polyspeech.writers import WRITERS

log = logging.getLogger(__name__)

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
SPEECH_FORMATS = {
    "wav": ("WAV", "audio/wav"),
    "flac": ("FLAC", "audio/flac"),
    "pcm": (None, "audio/pcm"),
}
ESPEAK = "espeak"  # the speech model every server has: espeak-ng, ``voice`` the language
# OpenAI's voices: an MMS-TTS model speaks them all in its one voice; espeak-ng cannot tell a
# text's language from them, so it answers 400 and asks for the language
OPENAI_VOICES = frozenset(
    "alloy ash ballad cedar coral echo fable marin nova onyx sage shimmer verse".split()
)


@dataclass
class ServeSettings:
    max_upload_mb: float = 25.0  # OpenAI's own limit
    max_audio_seconds: float = 1800.0
    request_timeout: float = 300.0  # seconds from arrival to answer
    max_batch: int = 16
    max_wait_ms: float = 10.0
    max_queue: int = 64
    api_keys: list[str] = field(default_factory=list)
    # CTC models decode with this LM (--lm as transcribe takes it); greedy unless asked, since
    # beam search costs throughput (docs/guide.md, "Serving and batch transcription")
    lm: str = NO_LM

    def __post_init__(self) -> None:
        for name in ("max_upload_mb", "max_audio_seconds", "request_timeout", "max_batch",
                     "max_queue"):  # fmt: skip
            if getattr(self, name) <= 0:
                flag = "--" + name.replace("_", "-")
                raise InputError(f"{flag} must be above 0, got {getattr(self, name)}")
        if self.max_wait_ms < 0:
            raise InputError(f"--max-wait-ms must be 0 or more, got {self.max_wait_ms}")


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str, param: str | None = None,
                 code: str | None = None, headers: dict | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = (
            status, message, kind, param, code,
        )  # fmt: skip
        self.headers = headers or {}


def _bad(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, "invalid_request_error", param)


def _error_response(error: ApiError) -> JSONResponse:
    body = {"message": error.message, "type": error.kind, "param": error.param,
            "code": error.code}  # fmt: skip
    return JSONResponse({"error": body}, error.status, headers=error.headers)


class SpeechRequest(BaseModel):
    """The JSON body of ``/v1/audio/speech``, OpenAI's fields, each of exactly its type."""

    model_config = ConfigDict(strict=True, extra="forbid")

    model: str
    input: str
    voice: str | None = None
    response_format: str = "wav"
    speed: float = 1.0
    instructions: str | None = None  # accepted; neither espeak-ng nor MMS-TTS takes any
    stream_format: str = "audio"


class Metrics:
    """Prometheus counters of one app, in a registry of its own."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        # status: the HTTP status answered, or "disconnected" for a client that hung up first
        self.requests = Counter(
            "polyspeech_requests", "Requests answered", ["endpoint", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.seconds = Histogram(
            "polyspeech_request_seconds", "Time from arrival to answer", ["endpoint"],
            registry=self.registry,
        )  # fmt: skip
        self.batch = Histogram(
            "polyspeech_batch_size", "Requests computed together",
            buckets=(1, 2, 4, 8, 16, 32, 64), registry=self.registry,
        )  # fmt: skip
        self.waiting = Gauge(
            "polyspeech_queue_waiting", "Requests waiting for the model", registry=self.registry
        )


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
            await _error_response(outcome)(scope, receive, noted_send)
        if endpoint != "/metrics":
            self.metrics.requests.labels(endpoint, label or str(status)).inc()
            self.metrics.seconds.labels(endpoint).observe(time.monotonic() - started)


def served_kind(model) -> str:
    """``ctc``, ``speechllm`` or ``tts``: what a loaded model can do here."""
    return getattr(model, "family", None) or "tts"


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


def _language_name(code: str | None) -> str | None:
    """The English name OpenAI's API gives (``cmn``: ``chinese``, its macrolanguage's)."""
    if code is None:
        return None
    import langcodes

    return langcodes.Language.get(code).prefer_macrolanguage().display_name("en").lower()


def _verbose(result, task: str, granularities: list[str]) -> dict:
    """OpenAI's verbose_json, with our ISO 639-3 code and per-segment languages added. A
    translation's ``language`` is its output's, English, as OpenAI's; the speech's is
    ``source_language``."""
    output_language = "eng" if task == "translate" else result.language
    whole = result.to_dict()  # the library's schema, which the segments and words keep
    body: dict[str, Any] = {
        "task": task,
        "language": _language_name(output_language),
        "language_code": output_language,
        "source_language": result.language,
        "language_probability": result.language_probability,
        "duration": result.duration,
        "text": result.text,
    }
    if "word" in granularities:
        body["words"] = [word for row in whole["segments"] for word in row["words"]]
    if "segment" in granularities or not granularities:
        segments = []
        for row in whole["segments"]:
            del row["words"]
            translation = row.pop("translation")
            row["compression_ratio"] = _compression_ratio(row["text"])
            if row["avg_logprob"] is None:
                del row["avg_logprob"]
            if translation is not None:
                row["translation"] = translation
            segments.append(row)
        body["segments"] = segments
    if result.translation is not None:
        body["translation"] = result.translation
    return body


def _compression_ratio(text: str) -> float:
    data = text.encode()
    return round(len(data) / len(zlib.compress(data)), 4) if data else 0.0


def create_app(models: dict[str, Any], settings: ServeSettings | None = None):
    """The FastAPI app serving ``models`` (name -> loaded model)."""
    settings = settings or ServeSettings()
    metrics = Metrics()

    def spoken(name: str, item: dict):
        """``item``'s text spoken; a voice or text the model cannot speak is the request's
        fault, answered naming its field (found here, on the worker thread that holds
        espeak-ng)."""
        from polyspeech.tts import espeak_voice, speak

        if name == ESPEAK:
            try:
                espeak_voice(item["lang"])
            except InputError:
                raise _bad(f"voice {item['voice']!r}: espeak-ng has no voice for this "
                           "language", "voice") from None  # fmt: skip
        try:
            if name == ESPEAK:
                return speak(item["text"], item["lang"], None, item["speed"])
            return models[name].speak(item["text"], item["lang"], item["speed"])
        except InputError:
            raise _bad(f"input: model {name!r} finds nothing in it to speak", "input") from None

    def run(key: Hashable, items: list[dict]) -> list[Any]:
        kind, name = key[0], key[1]
        if kind == "recognise":
            model, task = models[name], key[2]
            files = [item["samples"] for item in items]
            langs = [item["lang"] for item in items]
            options = TranscribeOptions(
                task=task, word_timestamps=key[3], batch_size=settings.max_batch
            )
            if served_kind(model) == "ctc":
                options = replace(options, lm=settings.lm)
            return model.transcribe_many(files, language=langs, options=options)
        if kind == "speech":
            return [spoken(name, item) for item in items]
        from polyspeech.align.spans import align_transcript

        return [
            align_transcript(models[name], i["samples"], i["lines"], i["lang"], i["granularity"])
            for i in items
        ]

    batcher = DynamicBatcher(
        run, settings.max_batch, settings.max_wait_ms / 1000, settings.max_queue,
        metrics.batch.observe,
    )  # fmt: skip

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="polyspeech", lifespan=lifespan)
    app.add_middleware(Guard, settings=settings, metrics=metrics)

    @app.exception_handler(ApiError)
    async def on_api_error(request: Request, error: ApiError):
        return _error_response(error)

    @app.exception_handler(HTTPException)
    async def on_http_error(request: Request, error: HTTPException):
        """Starlette's own refusals (no such route, a malformed multipart body) in OpenAI's
        shape too."""
        kind = "server_error" if error.status_code >= 500 else "invalid_request_error"
        return _error_response(ApiError(error.status_code, str(error.detail), kind,
                                        headers=error.headers))  # fmt: skip

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, error: RequestValidationError):
        problem = error.errors()[0]
        param = str(problem["loc"][-1]) if problem.get("loc") else None
        return _error_response(_bad(f"{param}: {problem['msg']}", param))

    def server_fault(error: InputError) -> ApiError:
        """A library error no field of the request explains: the server's setup is at fault
        (a model's or an LM's file), so its message, which names paths, stays in the log."""
        log.error("a model failed on a request: %s", error)
        return ApiError(500, "internal error", "server_error")

    async def compute(key: Hashable, item: dict, blame=server_fault) -> Any:
        """The batcher's answer for ``item``; ``blame`` turns a library :class:`InputError`
        into the answer naming the request's field at fault."""
        metrics.waiting.set(batcher.waiting)
        try:
            result = await asyncio.wait_for(batcher.submit(key, item), settings.request_timeout)
        except Overloaded as busy:
            raise ApiError(503, str(busy), "server_error", code="overloaded",
                           headers={"Retry-After": str(busy.retry_after)}) from None  # fmt: skip
        except asyncio.TimeoutError:  # not yet TimeoutError itself in Python 3.10
            raise ApiError(504, f"no answer within {settings.request_timeout:g} s",
                           "server_error", code="timeout") from None  # fmt: skip
        except InputError as error:
            raise blame(error) from None
        return result

    def kind_of(name: str) -> str | None:
        if name in models:
            return served_kind(models[name])
        return "tts" if name == ESPEAK else None

    def model_of(name: str, kinds: tuple[str, ...]):
        if kind_of(name) is None:
            offered = [n for n in [*models, ESPEAK] if kind_of(n) in kinds]
            raise ApiError(404, f"model {name!r} is not served here; served: "
                           f"{', '.join(offered)}", "invalid_request_error", "model",
                           "model_not_found")  # fmt: skip
        if kind_of(name) not in kinds:
            raise _bad(f"model {name!r} cannot do this ({kind_of(name)})", "model")
        return models.get(name)

    def offered_language(name: str, value: str | None, code: str | None, required: bool):
        """400 naming ``language`` where CTC model ``name`` lacks ``code``, or where it needs
        one (``required``: it has several languages and cannot identify the speech's)."""
        offered = models[name].languages
        listed = ", ".join(offered)
        if code is None:
            if required and len(offered) > 1:
                raise _bad(f"language: required for model {name!r}, one of: {listed}",
                           "language")  # fmt: skip
        elif offered and code not in offered:
            raise _bad(f"language {value!r}: model {name!r} does not offer it; it offers: "
                       f"{listed}", "language")  # fmt: skip

    async def upload(form, limit: float) -> Any:
        """The uploaded file's samples: 400 if no upload, 413 if too long, 415 if not audio."""
        from starlette.concurrency import run_in_threadpool

        from polyspeech.audio import load_audio

        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise _bad("file: send the audio as a file upload (multipart), not a text field",
                       "file")  # fmt: skip
        stream = io.BytesIO(await file.read())
        stream.name = file.filename or "upload"
        try:
            return await run_in_threadpool(load_audio, stream, max_duration=limit)
        except AudioTooLong as error:
            raise ApiError(413, str(error), "invalid_request_error", "file") from None
        except InputError as error:
            raise ApiError(415, str(error), "invalid_request_error", "file") from None

    def language_field(form) -> str | None:
        from polyspeech.text.languages import as_published  # a model's own key (MMS's tgl)

        value = form.get("language")
        if not value:
            return None
        try:
            return as_published(str(value))
        except InputError as error:
            raise _bad(f"language: {error}", "language") from None

    def text_field(form, name: str, required: bool = False) -> str | None:
        value = form.get(name)
        if value is not None and not isinstance(value, str):
            raise _bad(f"{name}: expected text, got a file", name)
        if required and not (value or "").strip():
            raise _bad(f"{name}: required", name)
        return value

    async def recognise(request: Request, task: str):
        form = await request.form()
        name = text_field(form, "model", required=True)
        model = model_of(name, ("ctc", "speechllm") if task == "transcribe" else ("speechllm",))
        response_format = text_field(form, "response_format") or "json"
        if response_format not in RESPONSE_FORMATS:
            raise _bad(f"response_format {response_format!r}: use "
                       f"{', '.join(RESPONSE_FORMATS)}", "response_format")  # fmt: skip
        temperature = text_field(form, "temperature") or "0"
        try:
            if not 0.0 <= float(temperature) <= 1.0:
                raise ValueError
        except ValueError:
            raise _bad(f"temperature {temperature!r}: a number from 0 to 1",
                       "temperature") from None  # fmt: skip
        text_field(form, "prompt")  # accepted; neither model family is conditioned on it
        granularities = [str(g) for g in form.getlist("timestamp_granularities[]")]
        for granularity in granularities:
            if granularity not in ("word", "segment"):
                raise _bad(f"timestamp_granularities[]: {granularity!r} is not word or "
                           "segment", "timestamp_granularities[]")  # fmt: skip
        lang = language_field(form) if task == "transcribe" else None
        blame = server_fault
        if served_kind(model) == "ctc":
            offered_language(name, text_field(form, "language"), lang, required=False)
            if lang is None and len(model.languages) > 1:

                def blame(error: InputError) -> ApiError:
                    """Without a language the model identifies it; where it cannot, the
                    request's missing language is what the client can mend."""
                    log.warning("model %r could not identify a language: %s", name, error)
                    return _bad(f"language: model {name!r} could not identify the speech's "
                                f"language; give one of: {', '.join(model.languages)}",
                                "language")  # fmt: skip

        samples = await upload(form, settings.max_audio_seconds)
        words = "word" in granularities and served_kind(model) == "speechllm"
        result = await compute(("recognise", name, task, words),
                               {"samples": samples, "lang": lang}, blame)  # fmt: skip
        if response_format == "json":
            return JSONResponse({"text": result.text})
        if response_format == "text":
            return PlainTextResponse(result.text + "\n")
        if response_format in ("srt", "vtt"):
            return PlainTextResponse(WRITERS[response_format](result))
        return JSONResponse(_verbose(result, task, granularities))

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request):
        return await recognise(request, "transcribe")

    @app.post("/v1/audio/translations")
    async def translations(request: Request):
        return await recognise(request, "translate")

    @app.post("/v1/audio/speech")
    async def speech(request: Request):
        import numpy as np
        import soundfile

        not_json = _bad("the body must be a JSON object: model, input, voice")
        try:
            fields = await request.json()
        except ValueError:
            raise not_json from None
        try:
            body = SpeechRequest.model_validate(fields)
        except ValidationError as error:
            where = error.errors()[0]["loc"]
            if not where:
                raise not_json from None
            param = ".".join(str(part) for part in where)
            raise _bad(f"{param}: {error.errors()[0]['msg']}", param) from None
        name, text = body.model, body.input
        voice_model = model_of(name, ("tts",))
        if not text.strip():
            raise _bad("input: the text to speak is required", "input")
        if len(text) > 4096:
            raise _bad(f"input: {len(text)} characters, over the limit of 4096", "input")
        if body.response_format not in SPEECH_FORMATS:
            raise _bad(f"response_format {body.response_format!r}: use "
                       f"{', '.join(SPEECH_FORMATS)}", "response_format")  # fmt: skip
        if body.stream_format != "audio":
            raise _bad(f"stream_format {body.stream_format!r}: only audio is served",
                       "stream_format")  # fmt: skip
        if not 0.25 <= body.speed <= 4.0:
            raise _bad(f"speed {body.speed!r}: a number from 0.25 to 4", "speed")
        voice, lang = body.voice, None
        if name == ESPEAK and not voice:
            raise _bad(f"voice: required for model {ESPEAK!r}, as the language to speak "
                       "(e.g. en, deu)", "voice")  # fmt: skip
        if voice in OPENAI_VOICES:
            if name == ESPEAK:
                raise _bad(f"voice {voice!r} is one of OpenAI's voices; model {ESPEAK!r} "
                           "speaks in a language's voice: give the language as voice (e.g. "
                           "en, deu), or use a served MMS-TTS model", "voice")  # fmt: skip
        elif voice:  # for espeak-ng the language; an MMS-TTS model has one voice
            from polyspeech.text.languages import to_iso639_3

            try:
                lang = to_iso639_3(voice)
                if voice_model is not None:  # an MMS-TTS voice speaks its own language only
                    voice_model.resolve_language(voice)
            except InputError as error:
                raise _bad(f"voice: {error}", "voice") from None
        item = {"text": text, "lang": lang, "voice": voice, "speed": body.speed}
        samples = await compute(("speech", name), item)
        kind, media = SPEECH_FORMATS[body.response_format]
        if kind is None:
            pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
            return Response(pcm, media_type=media)
        out = io.BytesIO()
        soundfile.write(out, samples, 16000, subtype="PCM_16", format=kind)
        return Response(out.getvalue(), media_type=media)

    @app.post("/v1/audio/alignments")
    async def alignments(request: Request):
        from polyspeech.align.spans import GRANULARITIES

        form = await request.form()
        name = text_field(form, "model", required=True)
        model = model_of(name, ("ctc",))
        transcript = text_field(form, "text", required=True)
        granularity = text_field(form, "granularity") or "word"
        if granularity not in GRANULARITIES:
            raise _bad(f"granularity {granularity!r}: use {', '.join(GRANULARITIES)}",
                       "granularity")  # fmt: skip
        lines = [line for line in transcript.splitlines() if line.strip()]
        lang = language_field(form)
        if model.languages != [UNIVERSAL]:  # a universal model takes any language
            offered_language(name, text_field(form, "language"), lang, required=True)
        samples = await upload(form, settings.max_audio_seconds)
        item = {"samples": samples, "lines": lines, "lang": lang, "granularity": granularity}

        def blame(error: InputError) -> ApiError:
            """With the language and granularity checked, what is left is the text's."""
            message = f"text: none of its characters is in the alphabet of model {name!r}"
            return _bad(message, "text")

        aligned = await compute(("align", name), item, blame)
        return JSONResponse({
            "spans": [s.to_dict() for s in aligned.spans],
            "lines": [s.to_dict() for s in aligned.line_spans],
            "unmapped": aligned.unmapped,
        })  # fmt: skip

    def provenance(name: str) -> dict | None:
        """Where a served model came from (name, repository, resolved commit, hub); espeak-ng
        is the system's."""
        return models[name].source.describe() if name in models else None

    @app.get("/v1/models")
    async def list_models():
        names = [*models, ESPEAK]
        return {"object": "list", "data": [
            {"id": n, "object": "model", "created": 0, "owned_by": "polyspeech",
             "kind": served_kind(models[n]) if n in models else "tts", "source": provenance(n)}
            for n in names
        ]}  # fmt: skip

    @app.get("/health")
    async def health():
        return {"status": "ok", "models": list(models), "waiting": batcher.waiting}

    @app.get("/metrics")
    async def prometheus():
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        metrics.waiting.set(batcher.waiting)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.state.batcher = batcher
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
