import itertools
import json
import re

import pytest
import soundfile

from tests.conftest import sine


@pytest.fixture
def recording(tmp_path):
    soundfile.write(tmp_path / "a.flac", sine(440, 3.0, 16000), 16000)
    (tmp_path / "a.txt").write_text("Hello world!\nold hello\n")
    return tmp_path / "a.flac", tmp_path / "a.txt"


def align(cli, model, audio, transcript, *args):
    return cli("align", audio, transcript, "--model", model, "--lang", "eng", *args)


def test_align_gives_spans_in_transcript_order_in_every_format(cli, conformer_folder, recording):
    model = conformer_folder[0]
    result = align(cli, model, *recording)
    assert result.code == 0, result.stderr
    data = json.loads(result.stdout)
    spans = data["spans"]
    assert [s["text"] for s in spans] == ["Hello", "world!", "old", "hello"]
    assert all(0 <= s["start"] < s["end"] <= 3.0 and 0 <= s["score"] <= 1 for s in spans)
    assert all(a["end"] <= b["start"] for a, b in itertools.pairwise(spans))
    lines = json.loads(align(cli, model, *recording, "--granularity", "line", "--star").stdout)
    assert [s["text"] for s in lines["spans"]] == ["Hello world!", "old hello"]
    chars = json.loads(align(cli, model, *recording, "--granularity", "char").stdout)["spans"]
    assert "".join(s["text"] for s in chars) == "Helloworld!oldhello"
    out = recording[0].parent / "a.TextGrid"
    result = align(cli, model, *recording, "--output-format", "textgrid", "--output", out)
    assert result.code == 0 and result.stdout == ""
    assert 'class = "IntervalTier"' in out.read_text() and '"world!"' in out.read_text()
    srt = align(cli, model, *recording, "--output-format", "srt").stdout
    assert srt.startswith("1\n00:00:") and "Hello" in srt
    vtt = align(cli, model, *recording, "--output-format", "vtt").stdout
    assert vtt.startswith("WEBVTT\n\n00:00:")
    ctm = align(cli, model, *recording, "--output-format", "ctm").stdout.splitlines()
    assert len(ctm) == 4 and ctm[1].split()[:2] == ["a", "1"] and ctm[1].split()[4] == "world!"


def milliseconds(clock: str) -> int:
    hours, minutes, seconds, thousandths = map(int, re.split("[:,.]", clock))
    return ((hours * 60 + minutes) * 60 + seconds) * 1000 + thousandths


def test_text_no_frame_stands_for_gets_a_cue_of_its_own_with_a_duration(
    cli, conformer_folder, recording
):
    recording[1].write_text("¿Hello 42 world!\n")  # no token for ¿, 4 or 2
    for granularity in ("word", "char"):
        for output_format in ("srt", "vtt"):
            args = ("--granularity", granularity, "--output-format", output_format)
            result = align(cli, conformer_folder[0], *recording, *args)
            assert result.code == 0, result.stderr
            cues = re.findall(r"^(\S+) --> (\S+)$", result.stdout, re.MULTILINE)
            times = [(milliseconds(start), milliseconds(end)) for start, end in cues]
            assert "42" in result.stdout and all(start < end for start, end in times)
            assert all(a[1] <= b[0] for a, b in itertools.pairwise(times))
    out = recording[0].parent / "a.TextGrid"
    align(cli, conformer_folder[0], *recording, "--output-format", "textgrid", "--output", out)
    assert '"42"' in out.read_text()


def test_unmapped_characters_are_a_warning(cli, conformer_folder, recording):
    recording[1].write_text("hello 42 world\n")
    result = align(cli, conformer_folder[0], *recording)
    assert result.code == 0, result.stderr
    assert "not in the model's vocabulary: '4'x1 '2'x1" in result.stderr
    assert json.loads(result.stdout)["unmapped"] == {"4": 1, "2": 1}


@pytest.mark.parametrize(
    ("text", "args", "problem"),
    [
        ("hello\n", ["--output-format", "xml"], "unknown output format 'xml'"),
        ("hello\n", ["--granularity", "page"], "unknown granularity 'page'"),
        ("42\n", [], "no character of the transcript is in the model's vocabulary"),
        ("hello world " * 40 + "\n", [], "transcript too long for the audio"),
        ("", [], "transcript is empty"),
    ],
)
def test_bad_alignment_requests(cli, conformer_folder, recording, text, args, problem):
    recording[1].write_text(text)
    out = recording[0].parent / "out.json"
    result = align(cli, conformer_folder[0], *recording, "--output", out, *args)
    assert result.code == 2 and problem in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_missing_files(cli, conformer_folder, recording, tmp_path):
    result = align(cli, conformer_folder[0], recording[0], tmp_path / "none.txt")
    assert result.code == 2 and "none.txt: transcript not found" in result.stderr
    result = align(cli, conformer_folder[0], tmp_path / "none.flac", recording[1])
    assert result.code == 2 and "none.flac" in result.stderr


def test_segment_writes_a_clip_and_a_manifest_line_per_transcript_line(
    cli, conformer_folder, recording, tmp_path
):
    out = tmp_path / "segments"
    args = ("segment", *recording, "--out-dir", out, "--lang", "eng")
    result = cli(*args, "--model", conformer_folder[0], "--min-score", "1.01")
    assert result.code == 0, result.stderr
    assert "wrote 2 clips" in result.stdout and "2 below score 1.01 (lines 1, 2)" in result.stdout
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == ["Hello world!", "old hello"]
    assert all(r["low_score"] and r["lang"] == "eng" for r in rows)
    for row in rows:
        samples, rate = soundfile.read(out / row["audio"])
        assert rate == 16000 and abs(len(samples) / rate - row["duration"]) < 1e-3
    result = cli("data", "validate", out / "manifest.jsonl", "--quiet")
    assert result.code == 0, result.stderr


def test_the_library_call(conformer_folder, recording):
    import polyspeech
    import polyspeech.align.viterbi  # importing a module of the package keeps it callable

    result = polyspeech.align(recording[0], ["hello world"], "eng", str(conformer_folder[0]))
    assert [span.text for span in result.spans] == ["hello", "world"]
    assert polyspeech.align.viterbi.frames_needed([1, 1]) == 3


def test_data_romanize_writes_the_universal_models_training_text(cli, tmp_path):
    soundfile.write(tmp_path / "a.flac", sine(440, 1.0, 16000), 16000)
    (tmp_path / "m.jsonl").write_text(
        '{"audio": "a.flac", "text": "Привет, мир!", "lang": "rus", "duration": 1.0}\n'
        '{"audio": "a.flac", "text": "42", "lang": "eng", "duration": 1.0}\n'
    )
    (tmp_path / "out").mkdir()
    result = cli("data", "romanize", tmp_path / "m.jsonl", "--out", tmp_path / "out" / "r.jsonl")
    assert result.code == 0, result.stderr
    assert "wrote 1 utterances" in result.stdout and "1 left no letters" in result.stdout
    row = json.loads((tmp_path / "out" / "r.jsonl").read_text())
    assert (row["text"], row["lang"], row["source_lang"]) == ("privet mir", "und", "rus")
    assert (tmp_path / "out" / row["audio"]).resolve() == (tmp_path / "a.flac").resolve()


def test_data_romanize_takes_at_most_per_lang_lines_of_each_language(cli, tmp_path):
    soundfile.write(tmp_path / "a.flac", sine(440, 1.0, 16000), 16000)
    lines = [("eng", "one"), ("eng", "two"), ("eng", "three"), ("deu", "vier"), ("deu", "fünf")]
    (tmp_path / "m.jsonl").write_text(
        "".join(
            json.dumps({"audio": "a.flac", "text": t, "lang": lang, "duration": 1.0}) + "\n"
            for lang, t in lines
        )
    )
    result = cli(
        "data", "romanize", tmp_path / "m.jsonl", "--out", tmp_path / "r.jsonl", "--per-lang", "2"
    )
    assert result.code == 0, result.stderr
    rows = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [row["text"] for row in rows] == ["one", "two", "vier", "fuenf"]
