import json

import pytest
import soundfile

from polyspeech.text.ngram import read_arpa
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


def test_transcribe_writes_each_format(tmp_path, cli, conformer_folder):
    folder, _ = conformer_folder
    soundfile.write(tmp_path / "a.flac", sine(440, 1.0, 16000), 16000)
    for output_format in ["txt", "json", "srt", "vtt", "tsv"]:
        result = cli(
            "transcribe",
            tmp_path / "a.flac",
            "--model",
            folder,
            "--lang",
            "eng",
            "--no-vad",
            "--output-format",
            output_format,
            "--output-dir",
            tmp_path / "out",
        )
        assert result.code == 0, result.stderr
        assert (tmp_path / "out" / f"a.{output_format}").is_file()
    record = json.loads((tmp_path / "out" / "a.json").read_text())
    assert record["language"] == "eng" and record["duration"] == 1.0


def test_transcribe_a_manifest(tmp_path, cli, conformer_folder):
    folder, _ = conformer_folder
    soundfile.write(tmp_path / "a.flac", sine(440, 1.0, 16000), 16000)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        '{"audio": "a.flac", "text": "x", "lang": "eng", "duration": 1.0, "id": "one"}\n'
        '{"audio": "a.flac", "text": "x", "lang": "zh", "duration": 1.0, "id": "two"}\n'
    )
    result = cli("transcribe", "--manifest", manifest, "--model", folder, "--no-vad")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(line["id"], line["language"]) for line in lines] == [("one", "eng"), ("two", "cmn")]


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--output-format", "docx"], "unknown output format 'docx'"),
        (["--lang", "fin"], "no adapter for fin; available: cmn, eng"),
        (["--lang", "xx"], "unknown language code 'xx'"),
    ],
)
def test_transcribe_bad_options(tmp_path, cli, conformer_folder, args, problem):
    soundfile.write(tmp_path / "a.flac", sine(440, 1.0, 16000), 16000)
    result = cli("transcribe", tmp_path / "a.flac", "--model", conformer_folder[0], *args)
    assert result.code == 2 and problem in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_transcribe_missing_model_and_input(tmp_path, cli):
    result = cli("transcribe", tmp_path / "a.flac", "--model", tmp_path / "nomodel")
    assert result.code == 2 and "model folder not found" in result.stderr
    assert cli("transcribe").code == 2


def test_languages_lists_the_adapters(cli, conformer_folder):
    result = cli("languages", "--model", conformer_folder[0])
    assert result.code == 0 and result.stdout.split() == ["cmn", "eng"]


def test_train_lm_then_transcribe_with_it(tmp_path, cli, conformer_folder):
    soundfile.write(tmp_path / "a.flac", sine(440, 1.0, 16000), 16000)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        '{"audio": "a.flac", "text": "Hello, world!", "lang": "eng", "duration": 1.0}\n'
        '{"audio": "a.flac", "text": "\u4f60\u597d", "lang": "cmn", "duration": 1.0}\n'
    )
    (tmp_path / "m2.jsonl").write_text(
        '{"audio": "a.flac", "text": "Bonjour !", "lang": "fra", "duration": 1.0}\n'
    )
    result = cli(
        "train", "lm", manifest, tmp_path / "m2.jsonl", "--out", tmp_path / "lm", "--order", "3"
    )
    assert result.code == 0, result.stderr
    names = sorted(p.name for p in (tmp_path / "lm").iterdir())
    assert names == ["cmn.arpa.gz", "eng.arpa.gz", "fra.arpa.gz"]
    for lang in ["eng", "cmn"]:
        result = cli(
            "transcribe", tmp_path / "a.flac", "--model", conformer_folder[0], "--lang", lang,
            "--no-vad", "--lm", tmp_path / "lm", "--output-format", "json",
        )  # fmt: skip
        assert result.code == 0, result.stderr
        assert json.loads(result.stdout)["language"] == lang
    (tmp_path / "lm" / "cmn.arpa.gz").unlink()
    result = cli(
        "transcribe", tmp_path / "a.flac", "--model", conformer_folder[0], "--lang", "cmn",
        "--lm", tmp_path / "lm",
    )  # fmt: skip
    assert result.code == 2 and "no language model for 'cmn'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = cli("train", "lm", manifest, "--out", tmp_path / "lm2", "--langs", "fin")
    assert result.code == 2 and "no lines in the languages asked for" in result.stderr


def test_train_lm_with_more_text_and_count_cut_offs(tmp_path, cli):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        '{"audio": "a.flac", "text": "\u4f60\u597d", "lang": "cmn", "duration": 1.0}\n'
        '{"audio": "a.flac", "text": "Hello", "lang": "eng", "duration": 1.0}\n'
    )
    (tmp_path / "more.txt").write_text(
        "\u4eca\u5929\u5f88\u597d\u3002\n\n\u5929\u6c14\u5f88\u597d\n"
    )
    result = cli(
        "train", "lm", manifest, "--out", tmp_path / "lm", "--langs", "cmn",
        "--text", tmp_path / "more.txt", "--min-count", "2", "--order", "3",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    assert "cmn: 3 lines" in result.stdout
    lm = read_arpa(tmp_path / "lm" / "cmn.arpa.gz")
    assert ("\u5f88", "\u597d", "</s>") in lm.probs  # seen twice
    assert ("\u4eca", "\u5929", "\u5f88") not in lm.probs  # seen once, cut
    assert ("\u4eca", "\u5929") in lm.probs  # two characters: never cut
    result = cli(
        "train", "lm", manifest, "--out", tmp_path / "lm2", "--text", tmp_path / "more.txt"
    )
    assert result.code == 2 and "more.txt: more text is for one language" in result.stderr
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\x00bad")
    result = cli(
        "train", "lm", manifest, "--out", tmp_path / "lm3", "--langs", "cmn",
        "--text", tmp_path / "bad.txt",
    )  # fmt: skip
    assert result.code == 2 and "bad.txt: text file is not UTF-8 text" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "lm3").exists()
    result = cli("train", "lm", manifest, "--out", tmp_path / "lm4", "--min-count", "0")
    assert result.code == 2 and "Invalid value for '--min-count'" in result.stderr
