"""Shared test helpers: run the CLI in-process and capture what a user would see."""

from __future__ import annotations

import socket
import sys
from dataclasses import dataclass

import numpy as np
import pytest

from polyspeech.cli import main
from polyspeech.ctc.conformer import ConformerConfig
from polyspeech.errors import InputError

# The conformer's code path at a size that runs in milliseconds.
TINY_CONFORMER = ConformerConfig(
    conv_channels=4, hidden_size=16, num_heads=2, feed_forward_size=32, num_layers=2, adapter_size=4
)


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


@pytest.fixture(autouse=True)
def own_conversion_cache(tmp_path_factory, monkeypatch):
    """Converted weights go to a folder of this test run, not the user's ~/.cache/polyspeech."""
    folder = tmp_path_factory.getbasetemp() / "polyspeech-cache"
    monkeypatch.setenv("POLYSPEECH_CACHE", str(folder))


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run ``polyspeech ARGS...`` through the console-script entry point."""

    def run(*args: str) -> CliResult:
        monkeypatch.setattr(sys, "argv", ["polyspeech", *map(str, args)])
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def sine(frequency: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    """A float32 sine tone."""
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def two_process_launch() -> list[str]:
    """``accelerate launch`` of two DDP processes on CPU (gloo), on a port free now: tests that
    launch one after another must not meet a previous run's rendezvous on the default port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
        "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(port),
    ]  # fmt: skip


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    """The frequency of the strongest FFT bin."""
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[spectrum.argmax()])


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """A synthetic corpus small enough for tests: 16 clips each of English, Spanish, Finnish."""
    from polyspeech.data.synth import synthesize_corpus

    out = tmp_path_factory.mktemp("tiny_corpus")
    synthesize_corpus(out, ["eng", "spa", "fin"], 16, seed=5, jobs=2)
    return out


@pytest.fixture
def conformer_folder(tmp_path):
    """A tiny, untrained conformer CTC model folder with two languages, and the model itself."""
    import torch

    from polyspeech.ctc.conformer import ConformerCTC
    from polyspeech.ctc.folder import save_conformer
    from polyspeech.text.vocab import Vocabulary

    torch.manual_seed(0)
    model = ConformerCTC(TINY_CONFORMER)
    vocabularies = {
        "eng": Vocabulary.from_texts(["hello world"]),
        "cmn": Vocabulary.from_texts(["\u4f60\u597d"]),
    }
    for lang, vocab in vocabularies.items():
        adapter = model.add_language(lang, len(vocab))
        torch.nn.init.normal_(adapter.layers[0][3].weight)  # not the identity: adapters matter
    save_conformer(tmp_path / "model", model.eval(), vocabularies)
    return tmp_path / "model", model


@pytest.fixture
def online_hub(tmp_path, monkeypatch):
    """The stand-in Hub on 127.0.0.1 (tests/hub/hub_server.py) with the huggingface_hub client
    aimed at it, its cache under ``tmp_path``."""
    from tests.hub.hub_server import HubServer, use_hub_server

    with HubServer() as server:
        use_hub_server(monkeypatch, server.url, tmp_path / "hf-cache")
        yield server


def one_line_error(call, *args, **kwargs) -> str:
    """The message of the :class:`InputError` that ``call`` raises, checked to be one line."""
    with pytest.raises(InputError) as error:
        call(*args, **kwargs)
    message = str(error.value)
    assert "\n" not in message, message
    return message
