"""A plain install is for inference: recognising, translating, identifying and speaking import
nothing of the synthesis and training extras, and those say which extra they need."""

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from polyspeech.errors import DependencyError, optional_module

ROOT = Path(__file__).resolve().parents[1]
EXTRAS_ONLY = ("faker", "num2words", "wordfreq", "accelerate")


def test_the_extras_modules_are_not_base_dependencies():
    requires = metadata.requires("polyspeech")  # as installed from pyproject.toml
    base = " ".join(r for r in requires if "extra ==" not in r)
    assert not [name for name in EXTRAS_ONLY if name in base]
    for name, extra in [("faker", "synth"), ("wordfreq", "synth"), ("accelerate", "train")]:
        assert any(r.startswith(name) and f'extra == "{extra}"' in r for r in requires), name


def test_inference_imports_none_of_the_extras():
    """transformers imports accelerate itself where it is installed, when it loads an LLM
    (its own option, not a need): so the speech LLM comes last and is held only to the
    synthesis extra."""
    script = f"""
import sys
import polyspeech
def loaded(names):
    return sorted(name for name in names if name in sys.modules)
model = polyspeech.load("builtin:ctc")
model.transcribe("{ROOT}/examples/deu.flac", language="deu")
model.transcribe("{ROOT}/examples/spa.flac")  # language identified: builtin:lid
polyspeech.speak("Guten Morgen", "deu")
print(loaded({EXTRAS_ONLY!r}))
polyspeech.translate("{ROOT}/examples/speechllm/cmn-test-000000.flac")
print(loaded({EXTRAS_ONLY[:3]!r}))
"""
    found = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert found.returncode == 0, found.stderr[-2000:]
    assert found.stdout.strip().splitlines()[-2:] == ["[]", "[]"]


def test_a_missing_extra_is_named_with_its_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "faker", None)  # as if not installed
    with pytest.raises(DependencyError, match=r"corpus synthesis needs faker: pip install "
                       r"'polyspeech\[synth\]'"):  # fmt: skip
        optional_module("faker", "corpus synthesis", "synth")
