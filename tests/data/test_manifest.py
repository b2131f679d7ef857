import json

import pytest
import soundfile

from polyspeech.data.manifest import (
    ManifestEntry,
    export_kaldi,
    import_kaldi,
    read_manifest,
    write_manifest,
)
from polyspeech.errors import InputError
from tests.conftest import sine


def test_round_trip_keeps_fields_and_resolves_relative_paths(tmp_path):
    (tmp_path / "audio").mkdir()
    entries = [
        ManifestEntry(str(tmp_path / "audio" / "a.flac"), "hello", "eng", 1.5, id="a"),
        ManifestEntry(
            "/elsewhere/b.flac",
            "\u4f60\u597d",
            "cmn",
            2.0,
            offset=3.0,
            translation="hi",
            task="ast",
            extra={"voice": "m1"},
        ),
    ]
    manifest = tmp_path / "m.jsonl"
    assert write_manifest(manifest, entries) == 2
    lines = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines()]
    assert lines[0]["audio"] == "audio/a.flac"  # relative to the manifest's folder
    assert lines[1]["audio"] == "/elsewhere/b.flac"
    assert "\u4f60\u597d" in manifest.read_text(encoding="utf-8")  # not escaped
    assert list(read_manifest(manifest)) == entries


def test_reading_from_another_working_directory(tmp_path, monkeypatch):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "m.jsonl").write_text(
        '{"audio": "x.flac", "text": "t", "lang": "en", "duration": 1}\n\n'
    )
    monkeypatch.chdir(tmp_path)
    (entry,) = read_manifest("corpus/m.jsonl")
    assert entry.audio == str(folder.resolve() / "x.flac")
    assert entry.lang == "eng"


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"audio": "a.flac", "text": "t", "lang": "eng"}', "missing required key 'duration'"),
        (
            '{"audio": "a.flac", "text": 5, "lang": "eng", "duration": 1}',
            "'text' has the wrong type",
        ),
        (
            '{"audio": "a", "text": "t", "lang": "eng", "duration": true}',
            "'duration' has the wrong",
        ),
        ('{"audio": "a.flac", "text": "t", "lang": "eng", "duration": 0}', "must be positive"),
        (
            '{"audio": "a", "text": "t", "lang": "eng", "duration": 1, "offset": -1}',
            "not be negative",
        ),
        ('{"audio": "a.flac", "text": "t", "lang": "xx", "duration": 1}', "unknown language code"),
    ],
)
def test_bad_line_is_named(tmp_path, line, problem):
    manifest = tmp_path / "m.jsonl"
    good = '{"audio": "a.flac", "text": "t", "lang": "eng", "duration": 1}'
    manifest.write_text(f"{good}\n{good}\n{line}\n")
    with pytest.raises(InputError) as error:
        list(read_manifest(manifest))
    assert str(error.value).startswith(f"{manifest}:3: ")
    assert problem in str(error.value)


def test_bad_manifest_from_the_cli(tmp_path, cli):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"audio": "a.flac", "text": "t", "lang": "eng"}\n')
    result = cli("data", "validate", manifest)
    assert result.code == 2
    assert result.stderr.strip() == (
        f"polyspeech: error: {manifest}:1: missing required key 'duration'"
    )
    missing = cli("data", "validate", tmp_path / "nope.jsonl")
    assert missing.code == 2 and "manifest not found" in missing.stderr


def test_failed_write_leaves_no_file(tmp_path):
    def entries():
        yield ManifestEntry("a.flac", "t", "eng", 1.0)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_manifest(tmp_path / "m.jsonl", entries())
    assert list(tmp_path.iterdir()) == []


def make_kaldi_folder(tmp_path):
    folder = tmp_path / "kaldi"
    (folder / "wav").mkdir(parents=True)
    soundfile.write(folder / "wav" / "u1.wav", sine(440, 1.25, 16000), 16000)
    soundfile.write(folder / "wav" / "u2.flac", sine(440, 2.5, 8000), 8000)
    (folder / "wav.scp").write_text("u1 wav/u1.wav\nu2 wav/u2.flac\n")
    (folder / "text").write_text("u1 hello  there\nu2 good morning\n")
    return folder


def test_kaldi_import_reads_durations_and_languages(tmp_path):
    folder = make_kaldi_folder(tmp_path)
    entries = list(import_kaldi(folder, lang="en"))
    assert [(e.id, e.text, e.lang, e.duration) for e in entries] == [
        ("u1", "hello  there", "eng", 1.25),
        ("u2", "good morning", "eng", 2.5),
    ]
    assert entries[0].audio == str(folder / "wav" / "u1.wav")
    (folder / "utt2lang").write_text("u1 deu\nu2 cmn\n")
    assert [e.lang for e in import_kaldi(folder)] == ["deu", "cmn"]


def test_kaldi_round_trip_with_segments(tmp_path):
    entries = [
        ManifestEntry(str(tmp_path / "long.flac"), "first part", "eng", 2.0, offset=0.5, id="s1"),
        ManifestEntry(str(tmp_path / "long.flac"), "second part", "eng", 1.5, offset=3.0, id="s2"),
        ManifestEntry(str(tmp_path / "other.flac"), "whole file", "fra", 4.0, id="s3"),
    ]
    out = tmp_path / "kaldi"
    assert export_kaldi(entries, out) == 3
    assert (out / "wav.scp").read_text().count("long.flac") == 1  # one recording, two segments
    back = list(import_kaldi(out))
    assert [(e.id, e.text, e.lang, e.offset, e.duration) for e in back] == [
        ("s1", "first part", "eng", 0.5, 2.0),
        ("s2", "second part", "eng", 3.0, 1.5),
        ("s3", "whole file", "fra", 0.0, 4.0),
    ]


def test_kaldi_cli_round_trip(tmp_path, cli):
    folder = make_kaldi_folder(tmp_path)
    manifest = tmp_path / "m.jsonl"
    assert cli("data", "from-kaldi", folder, "--out", manifest, "--lang", "eng").code == 0
    assert cli("data", "validate", manifest).code == 0
    assert cli("data", "to-kaldi", manifest, "--out", tmp_path / "again").code == 0
    assert (tmp_path / "again" / "text").read_text() == "u1 hello there\nu2 good morning\n"


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda f: (f / "text").unlink(), "text: not found"),
        (lambda f: (f / "wav.scp").write_text("u1 sox x.wav -t wav - |\n"), "piped commands"),
        (lambda f: (f / "text").write_text("u1 hello\n"), "no transcript for utterance 'u2'"),
        (lambda f: (f / "text").write_text("u1 a\nu1 b\n"), "duplicate utterance id 'u1'"),
        (lambda f: (f / "wav" / "u2.flac").write_text("not audio"), "not an audio file"),
    ],
)
def test_bad_kaldi_folder(tmp_path, cli, change, problem):
    folder = make_kaldi_folder(tmp_path)
    change(folder)
    result = cli("data", "from-kaldi", folder, "--out", tmp_path / "m.jsonl", "--lang", "eng")
    assert result.code == 2
    assert problem in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "m.jsonl").exists()


def test_kaldi_import_needs_a_language(tmp_path):
    with pytest.raises(InputError, match="language must be given"):
        list(import_kaldi(make_kaldi_folder(tmp_path)))
