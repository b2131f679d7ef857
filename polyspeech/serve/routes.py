"""The HTTP API's routes, each reading its request and asking the app's :class:`Served`."""

from __future__ import annotations

import io
import logging
import zlib
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from polyspeech.align.transcript import UNIVERSAL
from polyspeech.errors import AudioTooLong, InputError
from polyspeech.serve.api import (
    ESPEAK,
    OPENAI_VOICES,
    RESPONSE_FORMATS,
    SPEECH_FORMATS,
    ApiError,
    SpeechRequest,
    bad,
    served_kind,
)
from polyspeech.serve.served import Served
from polyspeech.writers import WRITERS

log = logging.getLogger(__name__)
router = APIRouter()


def _served(request: Request) -> Served:
    return request.app.state.served


async def upload(form, limit: float) -> Any:
    """The uploaded file's samples: 400 if no upload, 413 if too long, 415 if not audio."""
    from starlette.concurrency import run_in_threadpool

    from polyspeech.audio import load_audio

    file = form.get("file")
    if not isinstance(file, UploadFile):
        raise bad("file: send the audio as a file upload (multipart), not a text field", "file")
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
        raise bad(f"language: {error}", "language") from None


def text_field(form, name: str, required: bool = False) -> str | None:
    value = form.get(name)
    if value is not None and not isinstance(value, str):
        raise bad(f"{name}: expected text, got a file", name)
    if required and not (value or "").strip():
        raise bad(f"{name}: required", name)
    return value


async def recognise(request: Request, task: str):
    served = _served(request)
    form = await request.form()
    name = text_field(form, "model", required=True)
    model = served.model_of(name, ("ctc", "speechllm") if task == "transcribe" else ("speechllm",))
    response_format = text_field(form, "response_format") or "json"
    if response_format not in RESPONSE_FORMATS:
        raise bad(
            f"response_format {response_format!r}: use {', '.join(RESPONSE_FORMATS)}",
            "response_format",
        )
    temperature = text_field(form, "temperature") or "0"
    try:
        if not 0.0 <= float(temperature) <= 1.0:
            raise ValueError
    except ValueError:
        raise bad(f"temperature {temperature!r}: a number from 0 to 1", "temperature") from None
    text_field(form, "prompt")  # accepted; neither model family is conditioned on it
    granularities = [str(g) for g in form.getlist("timestamp_granularities[]")]
    for granularity in granularities:
        if granularity not in ("word", "segment"):
            raise bad(
                f"timestamp_granularities[]: {granularity!r} is not word or segment",
                "timestamp_granularities[]",
            )
    lang = language_field(form) if task == "transcribe" else None
    blame = served.server_fault
    if served_kind(model) == "ctc":
        served.offered_language(name, text_field(form, "language"), lang, required=False)
        if lang is None and len(model.languages) > 1:

            def blame(error: InputError) -> ApiError:
                """Without a language the model identifies it; where it cannot, the
                request's missing language is what the client can mend."""
                log.warning("model %r could not identify a language: %s", name, error)
                return bad(
                    f"language: model {name!r} could not identify the speech's "
                    f"language; give one of: {', '.join(model.languages)}",
                    "language",
                )

    samples = await upload(form, served.settings.max_audio_seconds)
    words = "word" in granularities and served_kind(model) == "speechllm"
    result = await served.compute(("recognise", name, task, words),
                           {"samples": samples, "lang": lang}, blame)  # fmt: skip
    if response_format == "json":
        return JSONResponse({"text": result.text})
    if response_format == "text":
        return PlainTextResponse(result.text + "\n")
    if response_format in ("srt", "vtt"):
        return PlainTextResponse(WRITERS[response_format](result))
    return JSONResponse(_verbose(result, task, granularities))


@router.post("/v1/audio/transcriptions")
async def transcriptions(request: Request):
    return await recognise(request, "transcribe")


@router.post("/v1/audio/translations")
async def translations(request: Request):
    return await recognise(request, "translate")


@router.post("/v1/audio/speech")
async def speech(request: Request):
    served = _served(request)
    import numpy as np
    import soundfile

    not_json = bad("the body must be a JSON object: model, input, voice")
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
        raise bad(f"{param}: {error.errors()[0]['msg']}", param) from None
    name, text = body.model, body.input
    voice_model = served.model_of(name, ("tts",))
    if not text.strip():
        raise bad("input: the text to speak is required", "input")
    if len(text) > 4096:
        raise bad(f"input: {len(text)} characters, over the limit of 4096", "input")
    if body.response_format not in SPEECH_FORMATS:
        raise bad(
            f"response_format {body.response_format!r}: use {', '.join(SPEECH_FORMATS)}",
            "response_format",
        )
    if body.stream_format != "audio":
        raise bad(f"stream_format {body.stream_format!r}: only audio is served", "stream_format")
    if not 0.25 <= body.speed <= 4.0:
        raise bad(f"speed {body.speed!r}: a number from 0.25 to 4", "speed")
    voice, lang = body.voice, None
    if name == ESPEAK and not voice:
        raise bad(
            f"voice: required for model {ESPEAK!r}, as the language to speak (e.g. en, deu)",
            "voice",
        )
    if voice in OPENAI_VOICES:
        if name == ESPEAK:
            raise bad(
                f"voice {voice!r} is one of OpenAI's voices; model {ESPEAK!r} "
                "speaks in a language's voice: give the language as voice (e.g. "
                "en, deu), or use a served MMS-TTS model",
                "voice",
            )
    elif voice:  # for espeak-ng the language; an MMS-TTS model has one voice
        from polyspeech.text.languages import to_iso639_3

        try:
            lang = to_iso639_3(voice)
            if voice_model is not None:  # an MMS-TTS voice speaks its own language only
                voice_model.resolve_language(voice)
        except InputError as error:
            raise bad(f"voice: {error}", "voice") from None
    item = {"text": text, "lang": lang, "voice": voice, "speed": body.speed}
    samples = await served.compute(("speech", name), item)
    kind, media = SPEECH_FORMATS[body.response_format]
    if kind is None:
        pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
        return Response(pcm, media_type=media)
    out = io.BytesIO()
    soundfile.write(out, samples, 16000, subtype="PCM_16", format=kind)
    return Response(out.getvalue(), media_type=media)


@router.post("/v1/audio/alignments")
async def alignments(request: Request):
    served = _served(request)
    from polyspeech.align.spans import GRANULARITIES

    form = await request.form()
    name = text_field(form, "model", required=True)
    model = served.model_of(name, ("ctc",))
    transcript = text_field(form, "text", required=True)
    granularity = text_field(form, "granularity") or "word"
    if granularity not in GRANULARITIES:
        raise bad(f"granularity {granularity!r}: use {', '.join(GRANULARITIES)}", "granularity")
    lines = [line for line in transcript.splitlines() if line.strip()]
    lang = language_field(form)
    if model.languages != [UNIVERSAL]:  # a universal model takes any language
        served.offered_language(name, text_field(form, "language"), lang, required=True)
    samples = await upload(form, served.settings.max_audio_seconds)
    item = {"samples": samples, "lines": lines, "lang": lang, "granularity": granularity}

    def blame(error: InputError) -> ApiError:
        """With the language and granularity checked, what is left is the text's."""
        message = f"text: none of its characters is in the alphabet of model {name!r}"
        return bad(message, "text")

    aligned = await served.compute(("align", name), item, blame)
    return JSONResponse({
        "spans": [s.to_dict() for s in aligned.spans],
        "lines": [s.to_dict() for s in aligned.line_spans],
        "unmapped": aligned.unmapped,
    })  # fmt: skip


@router.get("/v1/models")
async def list_models(request: Request):
    served = _served(request)
    rows = [
        {"id": n, "object": "model", "created": 0, "owned_by": "polyspeech",
         "kind": served.kind_of(n), "source": served.provenance(n)}
        for n in [*served.models, ESPEAK]
    ]  # fmt: skip
    return {"object": "list", "data": rows}


@router.get("/health")
async def health(request: Request):
    served = _served(request)
    return {"status": "ok", "models": list(served.models), "waiting": served.batcher.waiting}


@router.get("/metrics")
async def prometheus(request: Request):
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    served = _served(request)
    served.metrics.waiting.set(served.batcher.waiting)
    return Response(generate_latest(served.metrics.registry), media_type=CONTENT_TYPE_LATEST)


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
