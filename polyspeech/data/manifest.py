"""JSON Lines manifests (one utterance per line) and Kaldi/WeNet ``wav.scp`` + ``text`` folders.

A line: ``{"audio": "rel/or/abs.flac", "text": "...", "lang": "eng", "duration": 3.2}`` with
optional ``offset``, ``translation``, ``task`` and ``id``; any other keys are kept in ``extra``.
Relative audio paths resolve against the manifest's own folder. Reading and writing stream line
by line; a written manifest appears only once complete (temporary file, then rename).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from polyspeech.audio import audio_duration, load_audio
from polyspeech.errors import InputError
from polyspeech.files import atomic_text_file, open_text
from polyspeech.text.languages import to_iso639_3

_REQUIRED = {"audio": str, "text": str, "lang": str, "duration": (int, float)}
_OPTIONAL = {"offset": (int, float), "translation": str, "task": str, "id": str}


@dataclass
class ManifestEntry:
    """One utterance. ``audio`` is absolute once read; times are in seconds."""

    audio: str
    text: str
    lang: str
    duration: float
    offset: float | None = None
    translation: str | None = None
    task: str | None = None
    id: str | None = None
    extra: dict = field(default_factory=dict)

    def to_json(self, base: Path | None = None) -> str:
        """One manifest line; ``audio`` is written relative to ``base`` when it lies under it."""
        audio = self.audio
        if base is not None:
            try:
                audio = Path(audio).resolve().relative_to(base.resolve()).as_posix()
            except ValueError:
                pass
        record: dict = {"audio": audio, "text": self.text, "lang": self.lang}
        record["duration"] = round(self.duration, 4)
        for key in _OPTIONAL:
            value = getattr(self, key)
            if value is not None:
                record[key] = value
        record.update(self.extra)
        return json.dumps(record, ensure_ascii=False)


def load_entry_audio(entry: ManifestEntry, max_duration: float | None = None) -> np.ndarray:
    """The entry's audio, 16 kHz mono: its span when it has an offset, else the whole file."""
    return load_audio(
        entry.audio,
        offset=entry.offset or 0.0,
        duration=entry.duration if entry.offset is not None else None,
        max_duration=max_duration,
    )


def _parse_line(line: str, where: str, base: Path) -> ManifestEntry:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise InputError(f"{where}: not valid JSON ({error.msg})") from None
    if not isinstance(record, dict):
        raise InputError(f"{where}: expected a JSON object")
    for key, kind in {**_REQUIRED, **_OPTIONAL}.items():
        if key not in record:
            if key in _REQUIRED:
                raise InputError(f"{where}: missing required key {key!r}")
            continue
        value = record[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise InputError(f"{where}: {key!r} has the wrong type ({type(value).__name__})")
    if record["duration"] <= 0:
        raise InputError(f"{where}: 'duration' must be positive, got {record['duration']}")
    if record.get("offset", 0) < 0:
        raise InputError(f"{where}: 'offset' must not be negative, got {record['offset']}")
    try:
        lang = to_iso639_3(record["lang"])
    except InputError as error:
        raise InputError(f"{where}: {error}") from None
    audio = Path(record["audio"])
    known = {key: record.pop(key) for key in list(record) if key in _REQUIRED or key in _OPTIONAL}
    return ManifestEntry(
        audio=str(audio if audio.is_absolute() else base / audio),
        text=known["text"],
        lang=lang,
        duration=float(known["duration"]),
        offset=None if known.get("offset") is None else float(known["offset"]),
        translation=known.get("translation"),
        task=known.get("task"),
        id=known.get("id"),
        extra=record,
    )


def read_manifest(path: str | os.PathLike) -> Iterator[ManifestEntry]:
    """Yield the entries of a JSON Lines manifest; an :class:`InputError` names a bad line."""
    path = Path(path)
    base = path.parent.resolve()
    count = 0
    with open_text(path, "manifest") as lines:
        for number, line in enumerate(lines, start=1):
            if line.strip():
                count += 1
                yield _parse_line(line, f"{path}:{number}", base)
    if not count:
        raise InputError(f"{path}: manifest is empty, nothing to do")


def read_manifests(paths: Iterable[str | os.PathLike]) -> Iterator[ManifestEntry]:
    """The entries of several manifests, one after the other, as one."""
    for path in paths:
        yield from read_manifest(path)


def write_manifest(path: str | os.PathLike, entries: Iterable[ManifestEntry]) -> int:
    """Write ``entries`` as JSON Lines, audio paths relative to the manifest where possible.

    Returns the number of lines written.
    """
    path = Path(path)
    count = 0
    with atomic_text_file(path) as stream:
        for entry in entries:
            stream.write(entry.to_json(base=path.parent) + "\n")
            count += 1
    return count


def _read_kaldi_table(path: Path) -> dict[str, str]:
    """``key value...`` lines; the value is the rest of the line."""
    table: dict[str, str] = {}
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            key, _, value = line.strip().partition(" ")
            if key in table:
                raise InputError(f"{path}:{number}: duplicate utterance id {key!r}")
            table[key] = value.strip()
    return table


def import_kaldi(folder: str | os.PathLike, lang: str | None = None) -> Iterator[ManifestEntry]:
    """Yield entries from a Kaldi/WeNet data folder: ``wav.scp`` + ``text`` (+ ``segments``).

    Relative audio paths resolve against ``folder``; durations come from the audio headers.
    Languages come from ``utt2lang`` where the folder has one, otherwise from ``lang``.
    Piped ``wav.scp`` commands are refused.
    """
    folder = Path(folder)
    for required in ("wav.scp", "text"):
        if not (folder / required).is_file():
            raise InputError(
                f"{folder / required}: not found (a Kaldi folder needs wav.scp and text)"
            )
    recordings = _read_kaldi_table(folder / "wav.scp")
    texts = _read_kaldi_table(folder / "text")
    languages = _read_kaldi_table(folder / "utt2lang") if (folder / "utt2lang").is_file() else {}
    if lang is None and not languages:
        raise InputError(f"{folder}: no utt2lang file, so the language must be given")
    for key, location in recordings.items():
        if location.endswith("|"):
            raise InputError(f"{folder / 'wav.scp'}: {key}: piped commands are not supported")
    segments_path = folder / "segments"
    if segments_path.is_file():
        segments = _read_kaldi_table(segments_path)
    else:
        segments = {key: f"{key} 0 -1" for key in recordings}
    for key, value in segments.items():
        fields = value.split()
        if len(fields) != 3 or fields[0] not in recordings:
            raise InputError(f"{segments_path}: {key}: expected 'utterance recording start end'")
        if key not in texts:
            raise InputError(f"{folder / 'text'}: no transcript for utterance {key!r}")
        utterance_lang = languages.get(key, lang)
        if utterance_lang is None:
            raise InputError(f"{folder / 'utt2lang'}: no language for utterance {key!r}")
        audio = folder / recordings[fields[0]]
        start, end = float(fields[1]), float(fields[2])
        yield ManifestEntry(
            audio=str(audio),
            text=texts[key],
            lang=to_iso639_3(utterance_lang),
            duration=audio_duration(audio) if end < 0 else end - start,
            offset=start if segments_path.is_file() else None,
            id=key,
        )


def export_kaldi(entries: Iterable[ManifestEntry], folder: str | os.PathLike) -> int:
    """Write ``wav.scp``, ``text`` and ``utt2lang``, plus ``segments`` when any entry has an offset.

    Utterance ids are the entries' ids (or ``uttNNNNNNNN`` by position); returns how many.
    """
    folder = Path(folder)
    entries = list(entries)
    with_segments = any(entry.offset is not None for entry in entries)
    with (
        atomic_text_file(folder / "wav.scp") as wav_scp,
        atomic_text_file(folder / "text") as text,
        atomic_text_file(folder / "utt2lang") as utt2lang,
    ):
        recordings: dict[str, str] = {}
        segments: list[str] = []
        for number, entry in enumerate(entries, start=1):
            key = entry.id or f"utt{number:08d}"
            audio = Path(entry.audio).resolve()
            if not with_segments:
                wav_scp.write(f"{key} {audio}\n")
            else:
                if entry.audio not in recordings:
                    recordings[entry.audio] = f"rec{len(recordings) + 1:08d}"
                    wav_scp.write(f"{recordings[entry.audio]} {audio}\n")
                start = entry.offset or 0.0
                end = start + entry.duration
                segments.append(f"{key} {recordings[entry.audio]} {start:.3f} {end:.3f}\n")
            text.write(f"{key} {' '.join(entry.text.split())}\n")
            utt2lang.write(f"{key} {entry.lang}\n")
    if with_segments:
        with atomic_text_file(folder / "segments") as stream:
            stream.writelines(segments)
    return len(entries)


def validate_manifest(
    path: str | os.PathLike,
    max_duration: float | None = None,
    tolerance: float = 0.1,
    on_entry: Callable[[], None] | None = None,
) -> dict[str, float]:
    """Read every line of a manifest and its audio (refused past ``max_duration`` seconds);
    a duration off by more than ``tolerance`` seconds from the declared one is an error.
    Returns the seconds of audio per language. ``on_entry`` is called after each line."""
    from polyspeech.audio import SAMPLE_RATE

    seconds: dict[str, float] = {}
    for entry in read_manifest(path):
        actual = len(load_entry_audio(entry, max_duration)) / SAMPLE_RATE
        if abs(actual - entry.duration) > tolerance:
            raise InputError(
                f"{entry.audio}: manifest says {entry.duration:.2f} s, audio is {actual:.2f} s"
            )
        seconds[entry.lang] = seconds.get(entry.lang, 0.0) + actual
        if on_entry is not None:
            on_entry()
    return seconds
