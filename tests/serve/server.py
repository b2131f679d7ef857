"""Helpers for the server's tests: an app on a real uvicorn server on 127.0.0.1, clients."""

from __future__ import annotations

import io
import socket
import threading
from contextlib import contextmanager

import numpy as np
import openai
import soundfile


@contextmanager
def running(app):
    """``app`` served by uvicorn in a thread; yields its URL. The socket listens before the
    server starts, so a request sent at once waits in the backlog instead of being refused."""
    import uvicorn

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="error"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(60)
        listener.close()


def client(url: str, key: str = "none") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=300)


def wav(frames: int) -> bytes:
    out = io.BytesIO()
    soundfile.write(out, np.zeros(frames, np.float32), 16000, format="WAV")
    return out.getvalue()


def connect(url: str) -> socket.socket:
    """A raw connection to the server at ``url``, for requests no HTTP client sends."""
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=120)
