"""The client's faults, on a real server on 127.0.0.1 with stand-in models: each is answered as
the client's (or, for a client gone, counted and logged as such), never as the server's."""

from __future__ import annotations

import http.client
import logging
import threading

import httpx2 as httpx
import numpy as np

from polyspeech.errors import InputError
from polyspeech.serve.app import ServeSettings, create_app
from tests.serve.server import connect, running, wav


class PathModel:
    """A stand-in CTC model of two languages whose every library error names a path of the
    server's and a command-line option."""

    family = "ctc"
    languages = ("fin", "hun")

    def transcribe_many(self, files, *, language, options):
        raise InputError("/srv/models/x/adapter.fin.safetensors: unreadable; give --lang")


class Voice:
    """A stand-in MMS-TTS model (one voice, of ``language`` where given): a second of silence,
    the language recorded."""

    def __init__(self, language: str | None = None) -> None:
        self.langs, self.language = [], language

    def resolve_language(self, lang):
        if self.language is not None and lang != self.language:
            raise InputError(f"/srv/voices/x: this voice speaks {self.language}, not {lang}")
        return self.language or lang

    def speak(self, text, lang, speed):
        self.langs.append(lang)
        return np.zeros(16000, np.float32)


class Caught(logging.Handler):
    """The server's log records, with an event set at the first."""

    def __init__(self) -> None:
        super().__init__()
        self.records, self.logged = [], threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.logged.set()


def multipart_head(boundary: str = "b") -> bytes:
    """The start of a multipart body: its ``file`` part's headers, before the file's bytes."""
    return (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"'
            "\r\nContent-Type: audio/wav\r\n\r\n").encode()  # fmt: skip


def request_head(length: int | None) -> bytes:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
            f"multipart/form-data; boundary=b\r\n{framing}\r\n\r\n").encode()  # fmt: skip


def test_a_client_hanging_up_mid_upload_is_counted_and_logged_as_a_disconnect():
    caught = Caught()
    logger = logging.getLogger("polyspeech.serve")  # its modules log under it
    logger.addHandler(caught)
    try:
        with running(create_app({"paths": PathModel()})) as url:
            with connect(url) as connection:  # half of a 100 kB upload, then gone
                connection.sendall(request_head(100_000) + multipart_head() + b"\0" * 50_000)
            assert caught.logged.wait(120)
            metrics = httpx.get(f"{url}/metrics").text
    finally:
        logger.removeHandler(caught)
    endpoint = 'endpoint="/v1/audio/transcriptions"'
    assert f'polyspeech_requests_total{{{endpoint},status="disconnected"}} 1.0' in metrics
    assert 'status="500"' not in metrics
    [record] = caught.records  # one line, no traceback
    assert record.exc_info is None and "\n" not in record.getMessage()
    assert "hung up" in record.getMessage()


def test_a_chunked_upload_is_refused_once_it_crosses_the_limit_not_read_to_its_end():
    settings = ServeSettings(max_upload_mb=1.0)
    with running(create_app({"paths": PathModel()}, settings)) as url, connect(url) as connection:
        head = multipart_head()
        # one chunk announced at 2 MB, of which 1 MB and a byte are sent: the body never ends
        connection.sendall(request_head(None) + f"{2 * 2**20:x}\r\n".encode() + head)
        connection.sendall(b"\0" * (2**20 + 1 - len(head)))
        answer = http.client.HTTPResponse(connection)
        answer.begin()
        body = answer.read()
    assert answer.status == 413, body
    assert b"over the limit of 1 MB" in body


def test_an_api_key_is_taken_only_with_the_bearer_scheme():
    with running(create_app({}, ServeSettings(api_keys=["key-1"]))) as url:

        def status(authorization: str) -> httpx.Response:
            return httpx.get(f"{url}/v1/models", headers={"Authorization": authorization})

        for wrong in ("key-1", "Basic key-1", "Bearerkey-1", "Bearer key-2", ""):
            answer = status(wrong)
            assert answer.status_code == 401, wrong
            assert answer.json()["error"]["code"] == "invalid_api_key"
            assert answer.headers["www-authenticate"] == "Bearer"
        assert status("Bearer key-1").status_code == 200
        assert status("bearer key-1").status_code == 200  # the scheme is case-insensitive


def test_library_errors_reach_the_client_as_its_field_or_as_the_servers_fault():
    caught = Caught()
    logger = logging.getLogger("polyspeech.serve")  # its modules log under it
    logger.addHandler(caught)
    try:
        with running(create_app({"paths": PathModel()})) as url:

            def answer(**fields) -> httpx.Response:
                return httpx.post(
                    f"{url}/v1/audio/transcriptions", data={"model": "paths", **fields},
                    files={"file": ("a.wav", wav(16000))}, timeout=300,
                )  # fmt: skip

            unidentified, broken = answer(), answer(language="fi")
    finally:
        logger.removeHandler(caught)
    # without a language the model identifies it: where it cannot, the client can give one
    assert unidentified.status_code == 400
    assert unidentified.json()["error"] == {
        "message": "language: model 'paths' could not identify the speech's language; give "
        "one of: fin, hun", "type": "invalid_request_error", "param": "language", "code": None,
    }  # fmt: skip
    # with one, nothing the client sent explains it: the server's fault, its path in the log
    assert broken.status_code == 500 and broken.json()["error"]["message"] == "internal error"
    assert all("/srv/models" in record.getMessage() for record in caught.records)
    assert len(caught.records) == 2


def test_speech_fields_are_checked_for_their_types_and_openais_voices_are_a_models_own():
    voice = Voice()
    with running(create_app({"mms": voice, "finnish": Voice("fin")})) as url:

        def speak(**fields) -> httpx.Response:
            body = {"model": "mms", "input": "hello", **fields}
            return httpx.post(f"{url}/v1/audio/speech", json=body, timeout=300)

        for field, value in (
            ("speed", True), ("speed", "1"), ("model", 1), ("input", ["hello"]),
            ("voice", 3), ("response_format", None), ("instructions", 1), ("extra", "x"),
        ):  # fmt: skip
            answer = speak(**{field: value})
            assert answer.status_code == 400, (field, value)
            assert answer.json()["error"]["param"] == field
        for body in (b"[1]", b"{"):
            answer = httpx.post(f"{url}/v1/audio/speech", content=body)
            assert answer.status_code == 400 and "JSON object" in answer.text
        assert speak(speed=1, instructions="cheerful").status_code == 200  # an int is a number
        for openai_voice in ("alloy", "ash", "verse"):  # "ash" is a language code too
            assert speak(voice=openai_voice).status_code == 200
        assert speak(voice="de").status_code == 200
        other = speak(model="finnish", voice="de")  # the voice's language is not the one asked
        assert other.status_code == 400 and other.json()["error"]["param"] == "voice"
        assert "this voice speaks fin, not de" in other.json()["error"]["message"]
    assert voice.langs == [None, None, None, None, "deu"]


def test_starlettes_own_refusals_come_in_openais_shape():
    with running(create_app({})) as url:
        missing = httpx.get(f"{url}/v1/nothing")
        malformed = httpx.post(
            f"{url}/v1/audio/transcriptions", content=b"--x\r\nbroken",
            headers={"Content-Type": "multipart/form-data; boundary=b"},
        )  # fmt: skip
    assert missing.status_code == 404 and missing.json()["error"]["message"] == "Not Found"
    assert malformed.status_code == 400 and malformed.json()["error"]["param"] is None
