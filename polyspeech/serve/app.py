"""The HTTP API: OpenAI's audio endpoints, our alignment endpoint, models, health, metrics.

``POST /v1/audio/transcriptions``, ``/v1/audio/translations`` and ``/v1/audio/speech`` take the
fields OpenAI's API takes, so its clients work unchanged; ``POST /v1/audio/alignments`` (ours)
aligns an uploaded file to a transcript. Every model computation goes through one
:class:`~polyspeech.serve.batching.DynamicBatcher`, so concurrent requests are computed in
batches on one worker thread. Errors come back in OpenAI's shape,
``{"error": {"message", "type", "param", "code"}}``: 400 for a bad field, 401 for a wrong API key,
404 for a model not served, 413 for an upload or audio over the limits, 415 for a file that is
not audio, 503 (with Retry-After) when the queue is full, 504 past the request time limit.
Requests name models only by the names the server was started with and send audio only as
uploads: nothing in a request makes the server read a path of its own.
"""

from __future__ import annotations

import asyncio
import hmac
import io
import json
import logging
import math
import time
import zlib
from collections.abc import Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.datastructures import UploadFile

from polyspeech.ctc.decode import language_model_file
from polyspeech.ctc.model import NO_LM
from polyspeech.errors import AudioTooLong, InputError
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


@dataclass
class ServeSettings:
    max_upload_mb: float = 25.0  # OpenAI's own limit
    max_audio_seconds: float = 1800.0
    request_timeout: float = 300.0  # seconds from arrival to answer
    max_batch: int = 16
    max_wait_ms: float = 10.0
    max_queue: int = 64
    api_keys: list[str] = field(default_factory=list)
    # CTC models decode with this LM (--lm as transcribe takes it); greedy unless asked: with
    # builtin:ctc-lm, bench/serve_load.py answered 2.5x fewer requests a second (README)
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


class Metrics:
    """Prometheus counters of one app, in a registry of its own."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
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


def served_kind(model) -> str:
    """``ctc``, ``speechllm`` or ``tts``: what a loaded model can do here."""
    return getattr(model, "family", None) or "tts"


def load_served(spec: str, device: str = "cpu", dtype: str = "auto") -> tuple[str, Any]:
    """``NAME=MODEL`` or ``MODEL`` (then named by itself): a CTC model, a speech LLM, or an
    MMS-TTS folder."""
    from pathlib import Path

    from polyspeech import load
    from polyspeech.ctc.model import BUILTIN

    name, _, model = spec.rpartition("=")
    name = name or model
    config = BUILTIN.get(model, Path(model)) / "config.json"
    if config.is_file() and json.loads(config.read_text()).get("model_type") == "vits":
        from polyspeech.tts.vits import VitsVoice

        return name, VitsVoice(config.parent)
    return name, load(model, device=device, dtype=dtype)


def _language_name(code: str | None) -> str | None:
    """The English name OpenAI's API gives (``cmn``: ``chinese``, its macrolanguage's)."""
    if code is None:
        return None
    import langcodes

    return langcodes.Language.get(code).prefer_macrolanguage().display_name("en").lower()


def _verbose(result, task: str, granularities: list[str]) -> dict:
    """OpenAI's verbose_json, with our ISO 639-3 code and per-segment languages added."""
    body: dict[str, Any] = {
        "task": task,
        "language": _language_name(result.language),
        "language_code": result.language,
        "language_probability": result.language_probability,
        "duration": result.duration,
        "text": result.text,
    }
    if "segment" in granularities or not granularities:
        segments = []
        for index, segment in enumerate(result.segments):
            row = {
                "id": index,
                "start": segment.start,
                "end": segment.end,
                "text": segment.text,
                "compression_ratio": _compression_ratio(segment.text),
                "language": segment.language,
                "language_probability": segment.language_probability,
            }
            scores = [w.score for w in segment.words if w.score > 0]
            if scores:
                row["avg_logprob"] = round(sum(math.log(s) for s in scores) / len(scores), 4)
            if segment.translation is not None:
                row["translation"] = segment.translation
            segments.append(row)
        body["segments"] = segments
    if "word" in granularities:
        body["words"] = [
            {"word": w.text, "start": w.start, "end": w.end, "probability": w.score}
            for segment in result.segments
            for w in segment.words
        ]
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

    def run(key: Hashable, items: list[dict]) -> list[Any]:
        kind, name = key[0], key[1]
        if kind == "recognise":
            model, task = models[name], key[2]
            files = [item["samples"] for item in items]
            langs = [item["lang"] for item in items]
            if served_kind(model) == "ctc":
                return model.transcribe_many(
                    files, langs, batch_size=settings.max_batch, lm=settings.lm
                )
            words = key[3]
            return model.transcribe_many(
                files, langs, task, settings.max_batch, word_timestamps=words
            )
        if kind == "speech":
            from polyspeech.tts import speak

            return [
                speak(i["text"], i["lang"], None, i["speed"])
                if name == ESPEAK
                else models[name].speak(i["text"], i["lang"], i["speed"])
                for i in items
            ]
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

    def error_response(error: ApiError) -> JSONResponse:
        body = {"message": error.message, "type": error.kind, "param": error.param,
                "code": error.code}  # fmt: skip
        return JSONResponse({"error": body}, error.status, headers=error.headers)

    @app.exception_handler(ApiError)
    async def on_api_error(request: Request, error: ApiError):
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, error: RequestValidationError):
        problem = error.errors()[0]
        param = str(problem["loc"][-1]) if problem.get("loc") else None
        return error_response(_bad(f"{param}: {problem['msg']}", param))

    def too_big(size: int) -> ApiError:
        limit = f"{settings.max_upload_mb:g} MB"
        message = f"the upload is {size / 2**20:.1f} MB, over the limit of {limit}"
        return ApiError(413, message, "invalid_request_error", "file")

    @app.middleware("http")
    async def guard(request: Request, call_next):
        """API keys, the upload limit (before the body is read), metrics, and a 500 in
        OpenAI's shape for anything unforeseen."""
        started = time.monotonic()
        endpoint = request.url.path
        try:
            if settings.api_keys and endpoint.startswith("/v1/"):
                given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
                if not any(hmac.compare_digest(given.encode(), k.encode())
                           for k in settings.api_keys):  # fmt: skip
                    raise ApiError(401, "invalid or missing API key", "invalid_request_error",
                                   code="invalid_api_key")  # fmt: skip
            length = request.headers.get("content-length")
            if length is not None and int(length) > settings.max_upload_mb * 2**20:
                raise too_big(int(length))
            response = await call_next(request)
        except ApiError as error:
            response = error_response(error)
        except Exception:
            log.exception("request to %s failed", endpoint)
            response = error_response(ApiError(500, "internal error", "server_error"))
        if endpoint != "/metrics":
            metrics.requests.labels(endpoint, str(response.status_code)).inc()
            metrics.seconds.labels(endpoint).observe(time.monotonic() - started)
        return response

    async def compute(key: Hashable, item: dict) -> Any:
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
            raise _bad(str(error)) from None
        return result

    def model_of(name: str | None, kinds: tuple[str, ...]):
        if not name or name not in models:
            offered = ", ".join(n for n, m in models.items() if served_kind(m) in kinds)
            raise ApiError(404, f"model {name!r} is not served here; served: {offered}",
                           "invalid_request_error", "model", "model_not_found")  # fmt: skip
        if served_kind(models[name]) not in kinds:
            raise _bad(f"model {name!r} cannot do this ({served_kind(models[name])})", "model")
        return models[name]

    async def upload(form, limit: float) -> Any:
        """The uploaded file's samples: 400 if no upload, 413 if too long, 415 if not audio."""
        from starlette.concurrency import run_in_threadpool

        from polyspeech.audio import load_audio

        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise _bad("file: send the audio as a file upload (multipart), not a text field",
                       "file")  # fmt: skip
        data = await file.read()
        if len(data) > settings.max_upload_mb * 2**20:  # sent without a Content-Length
            raise too_big(len(data))
        stream = io.BytesIO(data)
        stream.name = file.filename or "upload"
        try:
            return await run_in_threadpool(load_audio, stream, max_duration=limit)
        except AudioTooLong as error:
            raise ApiError(413, str(error), "invalid_request_error", "file") from None
        except InputError as error:
            raise ApiError(415, str(error), "invalid_request_error", "file") from None

    def language_field(form) -> str | None:
        from polyspeech.text.languages import to_iso639_3

        value = form.get("language")
        if not value:
            return None
        try:
            return to_iso639_3(str(value))
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
        samples = await upload(form, settings.max_audio_seconds)
        speechllm_task = "asr" if task == "transcribe" else "ast"
        words = "word" in granularities and served_kind(model) == "speechllm"
        result = await compute(("recognise", name, speechllm_task, words),
                               {"samples": samples, "lang": lang})  # fmt: skip
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

        try:
            body = await request.json()
        except ValueError:
            raise _bad("the body must be JSON: model, input, voice") from None
        if not isinstance(body, dict):
            raise _bad("the body must be a JSON object")
        name = body.get("model")
        if name != ESPEAK:
            model_of(name, ("tts",))
        text = body.get("input")
        if not isinstance(text, str) or not text.strip():
            raise _bad("input: the text to speak is required", "input")
        if len(text) > 4096:
            raise _bad(f"input: {len(text)} characters, over the limit of 4096", "input")
        response_format = body.get("response_format", "wav")
        if response_format not in SPEECH_FORMATS:
            raise _bad(f"response_format {response_format!r}: use "
                       f"{', '.join(SPEECH_FORMATS)}", "response_format")  # fmt: skip
        speed = body.get("speed", 1.0)
        if not isinstance(speed, (int, float)) or not 0.25 <= speed <= 4.0:
            raise _bad(f"speed {speed!r}: a number from 0.25 to 4", "speed")
        voice = body.get("voice")
        lang = None
        if voice:  # for espeak-ng the language; an MMS-TTS model has one voice
            from polyspeech.text.languages import to_iso639_3

            try:
                lang = to_iso639_3(str(voice))
            except InputError as error:
                raise _bad(f"voice: {error}", "voice") from None
        item = {"text": text, "lang": lang, "speed": float(speed)}
        samples = await compute(("speech", name), item)
        kind, media = SPEECH_FORMATS[response_format]
        if kind is None:
            pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
            return Response(pcm, media_type=media)
        out = io.BytesIO()
        soundfile.write(out, samples, 16000, subtype="PCM_16", format=kind)
        return Response(out.getvalue(), media_type=media)

    @app.post("/v1/audio/alignments")
    async def alignments(request: Request):
        form = await request.form()
        name = text_field(form, "model", required=True)
        model_of(name, ("ctc",))
        transcript = text_field(form, "text", required=True)
        granularity = text_field(form, "granularity") or "word"
        lines = [line for line in transcript.splitlines() if line.strip()]
        lang = language_field(form)
        samples = await upload(form, settings.max_audio_seconds)
        item = {"samples": samples, "lines": lines, "lang": lang, "granularity": granularity}
        aligned = await compute(("align", name), item)
        return JSONResponse({
            "spans": [s.to_dict() for s in aligned.spans],
            "lines": [s.to_dict() for s in aligned.line_spans],
            "unmapped": aligned.unmapped,
        })  # fmt: skip

    @app.get("/v1/models")
    async def list_models():
        names = [*models, ESPEAK]
        return {"object": "list", "data": [
            {"id": n, "object": "model", "created": 0, "owned_by": "polyspeech",
             "kind": served_kind(models[n]) if n in models else "tts"} for n in names
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
