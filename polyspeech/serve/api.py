"""What the HTTP API's parts share: its settings, its errors in OpenAI's shape, its formats and
the names it reserves, the speech request's body, the metrics, and what kind a model is."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from polyspeech.ctc.model import NO_LM
from polyspeech.errors import InputError

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


def bad(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, "invalid_request_error", param)


def error_response(error: ApiError) -> JSONResponse:
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


def served_kind(model) -> str:
    """``ctc``, ``speechllm`` or ``tts``: what a loaded model can do here."""
    return getattr(model, "family", None) or "tts"
