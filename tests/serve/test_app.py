"""The HTTP API on a real server on 127.0.0.1, called with the official openai client."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

import httpx2 as httpx
import numpy as np
import openai
import pytest
import soundfile

from polyspeech.ctc.model import BUILTIN
from polyspeech.results import Result, Segment
from polyspeech.serve.app import ServeSettings, create_app, load_served
from tests.serve.server import client, running, wav
from tests.test_cli import use_offline_cache, write_hub_cache

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def served():
    models = dict(
        load_served(spec) for spec in ["ctc=builtin:ctc", "builtin:speechllm", "builtin:align"]
    )
    settings = ServeSettings(max_upload_mb=1.0, max_audio_seconds=20.0, api_keys=["key-1"])
    with running(create_app(models, settings)) as url:
        yield url, models


def test_transcriptions_in_every_format_match_the_library(served):
    url, models = served
    api = client(url, "key-1")
    path = EXAMPLES / "deu.flac"
    expected = models["ctc"].transcribe(path, language="deu")
    with path.open("rb") as audio:
        plain = api.audio.transcriptions.create(model="ctc", file=audio, language="de")
    assert plain.text == expected.text and expected.text
    with path.open("rb") as audio:
        text = api.audio.transcriptions.create(
            model="ctc", file=audio, language="deu", response_format="text"
        )
    assert text == expected.text + "\n"
    for response_format in ("srt", "vtt"):
        with path.open("rb") as audio:
            subtitles = api.audio.transcriptions.create(
                model="ctc", file=audio, language="deu", response_format=response_format
            )
        assert expected.text.split()[0] in subtitles and "-->" in subtitles
    with path.open("rb") as audio:
        verbose = api.audio.transcriptions.create(
            model="ctc", file=audio, response_format="verbose_json",
            timestamp_granularities=["word", "segment"],
        )  # fmt: skip
    # no language given: identified (builtin:lid), the name as OpenAI gives it, and our code
    assert verbose.language == "german" and verbose.language_code == "deu"
    assert verbose.text == expected.text and verbose.duration == expected.duration
    words = [w for s in expected.segments for w in s.words]
    assert [(w.word, w.start, w.end) for w in verbose.words] == [
        (w.word, w.start, w.end) for w in words
    ]
    assert [s.text for s in verbose.segments] == [s.text for s in expected.segments]


def test_translations_come_from_the_speech_llm(served):
    url, models = served
    path = sorted((EXAMPLES / "speechllm").glob("cmn-*.flac"))[0]
    expected = models["builtin:speechllm"].transcribe(path, task="translate")
    with path.open("rb") as audio:
        found = client(url, "key-1").audio.translations.create(
            model="builtin:speechllm", file=audio
        )
    assert found.text == expected.text and found.text


def test_speech_alignments_models_health_and_metrics(served):
    url, _ = served
    api = client(url, "key-1")
    spoken = api.audio.speech.create(
        model="espeak", voice="en", input="good morning to you", response_format="wav"
    )
    samples, rate = soundfile.read(io.BytesIO(spoken.content))
    assert rate == 16000 and len(samples) > 0.5 * rate
    headers = {"Authorization": "Bearer key-1"}
    row = json.loads((EXAMPLES / "examples.jsonl").read_text().splitlines()[0])
    with (EXAMPLES / row["audio"]).open("rb") as audio:
        aligned = httpx.post(
            f"{url}/v1/audio/alignments", headers=headers, files={"file": audio},
            data={"model": "builtin:align", "text": row["text"], "language": row["lang"]},
        )  # fmt: skip
    assert aligned.status_code == 200, aligned.text
    spans = aligned.json()["spans"]
    assert [s["text"] for s in spans] == row["text"].split()
    assert all(0 <= s["start"] < s["end"] <= row["duration"] for s in spans)
    assert {m.id for m in api.models.list()} == {"ctc", "builtin:speechllm", "builtin:align",
                                                 "espeak"}  # fmt: skip
    assert httpx.get(f"{url}/health").json()["status"] == "ok"  # no key needed off /v1/
    metrics = httpx.get(f"{url}/metrics").text
    assert 'polyspeech_requests_total{endpoint="/v1/audio/alignments",status="200"}' in metrics


def test_every_error_path_answers_in_openais_shape(served, tmp_path):
    url, _ = served
    api = client(url, "key-1")
    example = (EXAMPLES / "spa.flac").read_bytes()

    def post(data, files=None, headers=None):
        headers = {"Authorization": "Bearer key-1", **(headers or {})}
        answer = httpx.post(
            f"{url}/v1/audio/transcriptions", data=data, files=files, headers=headers
        )
        error = answer.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"]
        return answer.status_code, error

    with pytest.raises(openai.AuthenticationError):
        client(url, "key-2").audio.transcriptions.create(model="ctc", file=("a.flac", example))
    with pytest.raises(openai.NotFoundError, match="model 'whisper-1' is not served here"):
        api.audio.transcriptions.create(model="whisper-1", file=("a.flac", example))
    # a model named by a path of the server's is not loaded from it
    folder = str(BUILTIN["builtin:ctc"])
    assert post({"model": folder}, {"file": ("a.flac", example)})[0] == 404
    # a path where the upload should be is not read
    status, error = post({"model": "ctc", "file": "/etc/passwd"})
    assert status == 400 and "file upload" in error["message"]
    assert post({"model": "ctc"})[0] == 400
    status, error = post({"model": "ctc", "response_format": "docx"}, {"file": ("a.flac", example)})
    assert status == 400 and error["param"] == "response_format"

    def refused(status, file=("a.flac", example), **fields):
        """What the openai client raises for a request the server refuses with ``status``."""
        with pytest.raises(openai.APIStatusError) as caught:
            api.audio.transcriptions.create(file=file, **{"model": "ctc", **fields})
        assert caught.value.status_code == status, caught.value
        return str(caught.value)

    assert "response_format 'docx'" in refused(400, response_format="docx")
    assert "unknown language code 'xx'" in refused(400, language="xx")
    assert "temperature" in refused(400, temperature=3)
    assert "a.txt" in refused(415, file=("a.txt", b"not audio at all"))
    long = io.BytesIO()
    soundfile.write(long, np.zeros(21 * 16000, np.float32), 16000, format="FLAC")
    assert "over the limit of 20 s" in refused(413, file=("long.flac", long.getvalue()))
    assert "over the limit of 1 MB" in refused(413, file=("big.wav", b"\0" * (2 * 2**20)))
    with pytest.raises(openai.BadRequestError, match="model 'ctc' cannot do this"):
        api.audio.translations.create(model="ctc", file=("a.flac", example))
    assert httpx.get(f"{url}/health").json()["status"] == "ok"


def test_a_clients_mistake_is_answered_naming_its_field_and_nothing_of_the_servers(served):
    url, _ = served
    example = (EXAMPLES / "deu.flac").read_bytes()

    def refused(endpoint: str, fields: dict, upload: bool = True) -> tuple[int, str, str]:
        answer = httpx.post(
            f"{url}/v1/audio/{endpoint}", headers={"Authorization": "Bearer key-1"},
            files={"file": ("a.flac", example)} if upload else None,
            **({"data": fields} if upload else {"json": fields}),
        )  # fmt: skip
        error = answer.json()["error"]
        # no path of the server's (its model folders), no command-line option
        assert "/" not in error["message"] and "--" not in error["message"], error
        return answer.status_code, error["param"], error["message"]

    offered = "cmn, deu, eng, fra, ind, ita, nld, por, rus, spa, swh, tur"
    assert refused("transcriptions", {"model": "ctc", "language": "fi"}) == (
        400, "language", f"language 'fi': model 'ctc' does not offer it; it offers: {offered}",
    )  # fmt: skip
    align = {"model": "ctc", "text": "guten Morgen"}
    assert refused("alignments", align) == (
        400, "language", f"language: required for model 'ctc', one of: {offered}"
    )  # fmt: skip
    assert refused("alignments", {**align, "language": "fin"})[:2] == (400, "language")
    assert refused("alignments", {**align, "language": "de", "granularity": "page"}) == (
        400, "granularity", "granularity 'page': use word, char, line"
    )  # fmt: skip
    assert refused("alignments", {**align, "language": "de", "text": "♪ ♪"}) == (
        400, "text", "text: none of its characters is in the alphabet of model 'ctc'"
    )  # fmt: skip
    speech = {"model": "espeak", "input": "hello"}
    assert refused("speech", speech, upload=False)[:2] == (400, "voice")
    assert refused("speech", {**speech, "voice": "ain"}, upload=False)[:2] == (400, "voice")
    status, param, message = refused("speech", {**speech, "voice": "alloy"}, upload=False)
    assert (status, param) == (400, "voice") and "OpenAI's voices" in message
    status, param, message = refused("speech", {**speech, "model": "tts-1"}, upload=False)
    assert (status, param) == (404, "model") and message.endswith("served: espeak")


class HeldModel:
    """A stand-in recogniser: each batch waits until ``go`` is set, after setting ``computing``;
    it records its batch sizes and fails on a file of exactly 1234 samples."""

    family = "ctc"

    def __init__(self) -> None:
        self.languages: list[str] = []  # one language, no adapters
        self.batches, self.lms = [], []
        self.computing, self.go = threading.Event(), threading.Event()

    def transcribe_many(self, files, *, language, options):
        self.batches.append(len(files))
        self.lms.append(options.lm)
        self.computing.set()
        self.go.wait()
        if any(len(f) == 1234 for f in files):
            raise RuntimeError("this one breaks")
        return [Result(f"{len(f)}", "eng", [Segment(0.0, 1.0, f"{len(f)}")]) for f in files]


def ask(url: str, frames: int = 1000) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/audio/transcriptions", data={"model": "held"},
        files={"file": ("a.wav", wav(frames))}, timeout=300,
    )  # fmt: skip


def test_concurrent_requests_are_batched_and_a_failing_one_fails_alone():
    model = HeldModel()
    model.go.set()
    # a batch of eight waits (10 minutes at most) until all eight are there, however slow the
    # machine is to send them
    settings = ServeSettings(max_batch=8, max_wait_ms=600_000)
    sizes = [1000 + i for i in range(7)] + [1234]
    with running(create_app({"held": model}, settings)) as url, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda frames: ask(url, frames), sizes))
        metrics = httpx.get(f"{url}/metrics").text
    # each request counted in one batch (the failed batch's reruns one by one are not batches)
    assert "polyspeech_batch_size_sum 8.0" in metrics, metrics
    assert [a.json().get("text") for a in answers[:7]] == [str(s) for s in sizes[:7]]
    assert answers[7].status_code == 500 and answers[7].json()["error"]["type"] == "server_error"
    assert model.batches == [8] + [1] * 8  # together, then one by one after the error
    assert set(model.lms) == {"none"}  # greedy unless the server is started with --lm


def test_a_full_queue_answers_503_with_retry_after_and_a_slow_answer_504():
    model = HeldModel()
    settings = ServeSettings(max_batch=1, max_queue=1)
    try:
        with running(create_app({"held": model}, settings)) as url, ThreadPoolExecutor(3) as pool:
            first = pool.submit(ask, url)
            assert model.computing.wait(300)  # the worker holds it: the queue is empty again
            # one of the next two waits in the queue; the other finds the queue full
            others = [pool.submit(ask, url) for _ in range(2)]
            refused, _ = wait(others, return_when=FIRST_COMPLETED)
            model.go.set()
            answers = [first.result(), *(other.result() for other in others)]
    finally:
        model.go.set()
    assert sorted(a.status_code for a in answers) == [200, 200, 503]
    busy = refused.pop().result()
    assert busy.status_code == 503 and busy.json()["error"]["code"] == "overloaded"
    assert int(busy.headers["retry-after"]) >= 1
    model = HeldModel()  # held until the request has given up
    try:
        with running(create_app({"held": model}, ServeSettings(request_timeout=0.05))) as url:
            answer = ask(url)
            assert answer.status_code == 504 and answer.json()["error"]["code"] == "timeout"
            model.go.set()
            assert httpx.get(f"{url}/health").status_code == 200
    finally:
        model.go.set()


def test_the_serve_command_starts_a_server(tmp_path, cli):
    port = free_port()
    env = {**os.environ, "POLYSPEECH_API_KEY": "k"}
    command = [sys.executable, "-m", "polyspeech", "serve", "--model", "ctc=builtin:ctc",
               "--port", str(port), "--lm", "builtin:ctc-lm"]  # fmt: skip
    server = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300  # only a bound on a server that never starts
        while True:
            assert server.poll() is None, server.stderr.read()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        api = client(f"http://127.0.0.1:{port}", "k")
        with (EXAMPLES / "spa.flac").open("rb") as audio:
            found = api.audio.transcriptions.create(model="ctc", file=audio, language="es")
        assert found.text
    finally:
        server.terminate()
        server.wait(30)
    for args, problem in (
        (["--model", "espeak=builtin:ctc"], "is the server's espeak-ng voice"),
        (["--model", str(tmp_path / "none")], "model folder not found"),
        (["--model", "builtin:ctc", "--max-batch", "0"], "Invalid value for '--max-batch'"),
        (["--model", "builtin:ctc", "--max-wait-ms", "-1"], "Invalid value for '--max-wait-ms'"),
        (["--model", "builtin:ctc", "--lm", str(tmp_path)], "no language model for 'cmn'"),
    ):
        result = cli("serve", *args)
        assert result.code == 2 and problem in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_models_say_which_model_and_commit_each_is(tmp_path, monkeypatch, conformer_folder):
    cache = tmp_path / "hf-cache"
    commit = write_hub_cache(cache, "org/tiny", conformer_folder[0])
    use_offline_cache(monkeypatch, cache)
    models = dict(load_served(spec) for spec in [f"tiny=org/tiny@{commit}", "builtin:align"])
    with running(create_app(models)) as url:
        listed = httpx.get(f"{url}/v1/models").json()["data"]
    assert {m["id"]: m["source"] for m in listed} == {
        "tiny": {"model": f"org/tiny@{commit}", "repo": "org/tiny", "revision": commit,
                 "hub": "huggingface"},
        "builtin:align": {"model": "builtin:align", "repo": None, "revision": None,
                          "hub": "builtin"},
        "espeak": None,
    }  # fmt: skip


def test_serve_without_a_model_serves_the_builtin_recognisers(cli, monkeypatch):
    import uvicorn
    from fastapi.testclient import TestClient

    apps = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **_: apps.append(app))
    result = cli("serve")
    assert result.code == 0, result.stderr
    listed = TestClient(apps[0]).get("/v1/models").json()["data"]
    assert [m["id"] for m in listed] == ["builtin:ctc", "builtin:speechllm", "espeak"]
