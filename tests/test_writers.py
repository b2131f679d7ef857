import json
import math
import re

import pytest

from polyspeech.results import Result, Segment, Span, Word
from polyspeech.writers import (
    WRITERS,
    spans_to_ctm,
    spans_to_srt,
    spans_to_textgrid,
    spans_to_vtt,
    write_result,
)

RESULT = Result(
    "hello world again",
    "eng",
    [
        Segment(
            0.5, 1.25, "hello world", [Word("hello", 0.5, 0.82, 0.9), Word("world", 0.9, 1.25, 0.8)]
        ),
        Segment(3661.0, 3662.004, "again", [Word("again", 3661.0, 3662.004, 0.7)]),
    ],
    3663.0,
)


def test_srt_and_vtt_clocks():
    assert WRITERS["srt"](RESULT) == (
        "1\n00:00:00,500 --> 00:00:01,250\nhello world\n\n2\n01:01:01,000 --> 01:01:02,004\nagain\n"
    )
    assert WRITERS["vtt"](RESULT).startswith(
        "WEBVTT\n\n00:00:00.500 --> 00:00:01.250\nhello world\n"
    )


def test_tsv_has_segments_or_words_in_milliseconds():
    assert WRITERS["tsv"](RESULT).splitlines() == [
        "start\tend\ttext",
        "500\t1250\thello world",
        "3661000\t3662004\tagain",
    ]
    assert WRITERS["tsv"](RESULT, True).splitlines() == [
        "start\tend\ttext",
        "500\t820\thello",
        "900\t1250\tworld",
        "3661000\t3662004\tagain",
    ]


def test_word_timestamps_make_a_cue_a_word():
    assert WRITERS["srt"](RESULT, True).split("\n\n")[:2] == [
        "1\n00:00:00,500 --> 00:00:00,820\nhello",
        "2\n00:00:00,900 --> 00:00:01,250\nworld",
    ]
    assert "00:00:00.900 --> 00:00:01.250\nworld\n" in WRITERS["vtt"](RESULT, True)


def test_json_round_trips():
    assert Result.from_dict(json.loads(WRITERS["json"](RESULT))) == RESULT


def test_json_has_whispers_names():
    record = json.loads(WRITERS["json"](RESULT))
    first, second = record["segments"]
    assert (first["id"], second["id"]) == (0, 1)
    assert first["words"][0] == {"word": "hello", "start": 0.5, "end": 0.82, "probability": 0.9}
    assert first["avg_logprob"] == round((math.log(0.9) + math.log(0.8)) / 2, 4)
    assert (
        Result("", None, [Segment(0.0, 1.0, "hi")]).to_dict()["segments"][0]["avg_logprob"] is None
    )


def test_json_written_before_whispers_names_reads_the_same():
    record = json.loads(WRITERS["json"](RESULT))
    for segment in record["segments"]:
        for word in segment["words"]:
            word["text"], word["score"] = word.pop("word"), word.pop("probability")
    assert Result.from_dict(record) == RESULT


def test_json_says_where_the_result_came_from_and_the_other_formats_do_not():
    source = {"model": "org/m@v1", "repo": "org/m", "revision": "a" * 40, "hub": "huggingface"}
    pinned = Result("hi", "eng", [Segment(0.0, 1.0, "hi")], 1.0, source=source)
    record = json.loads(WRITERS["json"](pinned))
    assert record["source"] == source and Result.from_dict(record) == pinned
    assert all("org/m" not in WRITERS[name](pinned) for name in ("txt", "srt", "vtt", "tsv"))


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setitem(WRITERS, "txt", lambda result, words: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        write_result(RESULT, tmp_path / "out.txt", "txt")
    assert list(tmp_path.iterdir()) == []


def test_textgrid_tiles_the_recording_and_gives_spans_without_duration_a_millisecond():
    spans = [Span("a", 0.5, 1.0, 0.9), Span("42", 1.0, 1.0, 0.0), Span('say "b"', 1.2, 1.5, 0.8)]
    grid = spans_to_textgrid(spans, 2.0, "word")
    intervals = re.findall(r"xmin = ([\d.]+)\s+xmax = ([\d.]+)\s+text = \"(.*)\"", grid)
    assert intervals == [
        ("0.0", "0.5", ""),
        ("0.5", "1.0", "a"),
        ("1.0", "1.001", "42"),
        ("1.001", "1.2", ""),
        ("1.2", "1.5", 'say ""b""'),
        ("1.5", "2.0", ""),
    ]
    assert "intervals: size = 6" in grid and 'name = "word"' in grid


def test_cues_have_text_and_duration_and_do_not_overlap():
    result = Result(
        "hello world",
        "cmn",
        [
            Segment(0.0, 1.0, "", translation="hi"),  # a translation into nothing
            Segment(1.0, 2.0, "hello"),
            Segment(2.5, 3.0, "  "),
            Segment(3.0, 4.0, "world"),
        ],
    )
    assert WRITERS["srt"](result) == (
        "1\n00:00:01,000 --> 00:00:02,000\nhello\n\n2\n00:00:03,000 --> 00:00:04,000\nworld\n"
    )
    assert WRITERS["vtt"](result).count("-->") == 2
    # a character the aligner found no frame for, at the start of the next one's time
    spans = [Span("¿", 0.5, 0.5, 0.0), Span("h", 0.5, 0.54, 0.9), Span("o", 0.54, 0.6, 0.8)]
    assert spans_to_srt(spans).splitlines()[1::4] == [
        "00:00:00,500 --> 00:00:00,501",
        "00:00:00,501 --> 00:00:00,540",
        "00:00:00,540 --> 00:00:00,600",
    ]
    assert spans_to_vtt(spans).splitlines()[2] == "00:00:00.500 --> 00:00:00.501"


def test_ctm_has_one_token_a_line():
    lines = spans_to_ctm([Span("two words", 0.25, 1.0, 0.5)], "rec").splitlines()
    assert lines == ["rec 1 0.250 0.750 two_words 0.5000"]
