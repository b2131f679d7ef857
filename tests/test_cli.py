import json

import pytest
import soundfile

from tests.audio.test_io import BAD_INPUTS
from tests.conftest import sine


def write_manifest_for(tmp_path, audio, duration=1.0, **fields):
    manifest = tmp_path / "m.jsonl"
    record = {"audio": str(audio), "text": "hello", "lang": "en", "duration": duration, **fields}
    manifest.write_text(json.dumps(record) + "\n")
    return manifest


def test_validate_reports_hours_per_language(tmp_path, cli):
    soundfile.write(tmp_path / "a.flac", sine(440, 1.8, 16000), 16000)
    result = cli("data", "validate", write_manifest_for(tmp_path, "a.flac", 1.8))
    assert result.code == 0, result.stderr
    assert "eng\t0.001 h" in result.stdout
    assert "valid" in result.stdout


@pytest.mark.parametrize(("make", "problem"), BAD_INPUTS)
def test_bad_audio_gives_one_line_and_exit_2(tmp_path, cli, make, problem):
    path = make(tmp_path)
    result = cli("data", "validate", write_manifest_for(tmp_path, path))
    assert result.code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("polyspeech: error: ")
    assert str(path) in lines[0] and problem in lines[0]
    assert "Traceback" not in result.stderr


def test_audio_over_the_limit_from_the_cli(tmp_path, cli):
    soundfile.write(tmp_path / "long.flac", sine(440, 5.0, 16000), 16000)
    manifest = write_manifest_for(tmp_path, "long.flac", 5.0)
    result = cli("data", "validate", manifest, "--max-duration", "4")
    assert result.code == 2
    assert result.stderr.strip().endswith("audio is 5.0 s long, over the limit of 4 s")
    assert str(tmp_path / "long.flac") in result.stderr


def test_duration_that_disagrees_with_the_audio(tmp_path, cli):
    soundfile.write(tmp_path / "a.flac", sine(440, 1.0, 16000), 16000)
    result = cli("data", "validate", write_manifest_for(tmp_path, "a.flac", 3.0))
    assert result.code == 2
    assert "manifest says 3.00 s, audio is 1.00 s" in result.stderr


def test_no_arguments_shows_help(cli):
    result = cli()
    assert "data" in result.stdout + result.stderr
