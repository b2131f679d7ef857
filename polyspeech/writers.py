"""Result writers: txt, json, srt, vtt, tsv. Each file appears only when complete."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

from polyspeech.files import atomic_text_file
from polyspeech.results import Result


def _clock(seconds: float, separator: str) -> str:
    milliseconds = round(seconds * 1000)
    hours, rest = divmod(milliseconds, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}{separator}{rest % 1000:03d}"


def to_txt(result: Result) -> str:
    return result.text + "\n"


def to_json(result: Result) -> str:
    return json.dumps(result.to_dict(), ensure_ascii=False) + "\n"


def to_srt(result: Result) -> str:
    blocks = [
        f"{number}\n{_clock(s.start, ',')} --> {_clock(s.end, ',')}\n{s.text}\n"
        for number, s in enumerate(result.segments, start=1)
    ]
    return "\n".join(blocks)


def to_vtt(result: Result) -> str:
    blocks = [
        f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n{s.text}\n" for s in result.segments
    ]
    return "WEBVTT\n\n" + "\n".join(blocks)


def to_tsv(result: Result) -> str:
    """Words with start and end in milliseconds, as whisper writes segments."""
    rows = ["start\tend\ttext"]
    for segment in result.segments:
        for word in segment.words:
            rows.append(f"{round(word.start * 1000)}\t{round(word.end * 1000)}\t{word.text}")
    return "\n".join(rows) + "\n"


WRITERS: dict[str, Callable[[Result], str]] = {
    "txt": to_txt,
    "json": to_json,
    "srt": to_srt,
    "vtt": to_vtt,
    "tsv": to_tsv,
}


def write_result(result: Result, path: str | os.PathLike, output_format: str) -> None:
    """Write ``result`` in ``output_format`` to ``path``; the file appears only when complete."""
    with atomic_text_file(path) as stream:
        stream.write(WRITERS[output_format](result))
