"""Result writers: txt, json, srt, vtt, tsv. Each file appears only when complete.

Subtitle cues (srt, vtt) and TextGrid intervals are timed text: a piece without text is left
out, and one without duration (a word or character alignment found no frame for) lasts
``SHORTEST_CUE``, taken from what follows it, so no cue is empty, none has zero length and
none overlaps the next. JSON, tsv and ctm keep the times as found.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence

from polyspeech.files import atomic_text_file
from polyspeech.results import Result, Segment, Span


def _clock(seconds: float, separator: str) -> str:
    milliseconds = round(seconds * 1000)
    hours, rest = divmod(milliseconds, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}{separator}{rest % 1000:03d}"


def to_txt(result: Result, words: bool = False) -> str:
    return result.text + "\n"


def to_json(result: Result, words: bool = False) -> str:
    """The result's :meth:`Result.to_dict`, words and all (``words`` changes nothing)."""
    return json.dumps(result.to_dict(), ensure_ascii=False) + "\n"


SHORTEST_CUE = 0.001  # seconds: the resolution of srt and vtt clocks


def _timed(cues: Sequence[Segment | Span]) -> list[tuple[float, float, str]]:
    """``(start, end, text)`` of the cues with text, each at least ``SHORTEST_CUE`` long and
    starting no earlier than the one before it ends."""
    timed: list[tuple[float, float, str]] = []
    for cue in cues:
        if not cue.text.strip():
            continue
        start = max(cue.start, timed[-1][1]) if timed else cue.start
        timed.append((start, max(cue.end, round(start + SHORTEST_CUE, 3)), cue.text))
    return timed


def _srt(cues: Sequence[Segment | Span]) -> str:
    blocks = [
        f"{number}\n{_clock(start, ',')} --> {_clock(end, ',')}\n{text}\n"
        for number, (start, end, text) in enumerate(_timed(cues), start=1)
    ]
    return "\n".join(blocks)


def _vtt(cues: Sequence[Segment | Span]) -> str:
    blocks = [
        f"{_clock(start, '.')} --> {_clock(end, '.')}\n{text}\n"
        for start, end, text in _timed(cues)
    ]
    return "WEBVTT\n\n" + "\n".join(blocks)


def _cues(result: Result, words: bool) -> list[Segment] | list[Span]:
    """The segments, or with ``words`` each word as a cue of its own (whisper's word-level
    subtitles)."""
    if not words:
        return result.segments
    return [
        Span(word.word, word.start, word.end, word.probability)
        for segment in result.segments
        for word in segment.words
    ]


def to_srt(result: Result, words: bool = False) -> str:
    return _srt(_cues(result, words))


def to_vtt(result: Result, words: bool = False) -> str:
    return _vtt(_cues(result, words))


def to_tsv(result: Result, words: bool = False) -> str:
    """Segments (with ``words``, words) with start and end in milliseconds, as whisper writes
    them."""
    rows = ["start\tend\ttext"]
    for cue in _cues(result, words):
        rows.append(f"{round(cue.start * 1000)}\t{round(cue.end * 1000)}\t{cue.text}")
    return "\n".join(rows) + "\n"


# each takes the result and ``words``: word-level cues where the format has cues
WRITERS: dict[str, Callable[..., str]] = {
    "txt": to_txt,
    "json": to_json,
    "srt": to_srt,
    "vtt": to_vtt,
    "tsv": to_tsv,
}


def write_result(
    result: Result, path: str | os.PathLike, output_format: str, words: bool = False
) -> None:
    """Write ``result`` in ``output_format`` (with ``words``, word-level cues) to ``path``; the
    file appears only when complete."""
    with atomic_text_file(path) as stream:
        stream.write(WRITERS[output_format](result, words))


def spans_to_json(spans: list[Span], unmapped: dict[str, int]) -> str:
    return (
        json.dumps(
            {"spans": [span.to_dict() for span in spans], "unmapped": unmapped}, ensure_ascii=False
        )
        + "\n"
    )


def spans_to_srt(spans: list[Span]) -> str:
    return _srt(spans)


def spans_to_vtt(spans: list[Span]) -> str:
    return _vtt(spans)


def spans_to_textgrid(spans: list[Span], duration: float, tier: str) -> str:
    """A Praat TextGrid (long format) with one interval tier; gaps become empty intervals, and
    spans are timed as subtitle cues are (an interval must have a duration)."""
    intervals: list[tuple[float, float, str]] = []
    time = 0.0
    for start, stop, text in _timed(spans):
        if start > time:
            intervals.append((time, start, ""))
        intervals.append((start, stop, text))
        time = stop
    end = max(duration, time)
    if end > time:
        intervals.append((time, end, ""))
    rows = [
        'File type = "ooTextFile"',
        'Object class = "TextGrid"',
        "",
        "xmin = 0",
        f"xmax = {end}",
        "tiers? <exists>",
        "size = 1",
        "item []:",
        "    item [1]:",
        '        class = "IntervalTier"',
        f'        name = "{tier}"',
        "        xmin = 0",
        f"        xmax = {end}",
        f"        intervals: size = {len(intervals)}",
    ]
    for number, (start, stop, text) in enumerate(intervals, start=1):
        quoted = text.replace('"', '""')
        rows += [
            f"        intervals [{number}]:",
            f"            xmin = {start}",
            f"            xmax = {stop}",
            f'            text = "{quoted}"',
        ]
    return "\n".join(rows) + "\n"


def spans_to_ctm(spans: list[Span], recording: str) -> str:
    """NIST CTM: recording, channel 1, start, duration, token (spaces as _), confidence."""
    return "".join(
        f"{recording} 1 {s.start:.3f} {s.end - s.start:.3f} {'_'.join(s.text.split())} "
        f"{s.score:.4f}\n"
        for s in spans
    )


SPAN_FORMATS = ("json", "srt", "vtt", "textgrid", "ctm")
