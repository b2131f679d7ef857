"""WebDataset-style tar shards: for each utterance a ``KEY.json`` (its manifest fields but the
audio) and the audio as ``KEY.flac`` (or the file's own format), one after the other.

Shards are read as a stream (no index, no random access), so a corpus on slow or remote storage
is read once from start to end; audio stays encoded until it is needed.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import soundfile

from polyspeech.audio import SAMPLE_RATE, load_audio
from polyspeech.data.manifest import ManifestEntry, load_entry_audio
from polyspeech.errors import InputError
from polyspeech.files import check_input_file, make_folder

AUDIO_SUFFIXES = (".flac", ".wav", ".mp3", ".ogg", ".opus", ".m4a")


@dataclass
class ShardSample:
    """One utterance of a shard: its entry (``audio`` names the shard and member) and the
    encoded audio."""

    entry: ManifestEntry
    data: bytes

    def audio(self):
        return load_audio(self.data)


def is_shard(path: str | os.PathLike) -> bool:
    return str(path).endswith(".tar")


def read_shards(paths: Iterable[str | os.PathLike]) -> Iterator[ShardSample]:
    """The samples of each shard in turn, in the order they were written."""
    for path in paths:
        path = Path(path)
        try:
            archive = tarfile.open(path, mode="r|")
        except (OSError, tarfile.TarError) as error:
            raise InputError(f"{path}: not a readable tar shard ({error})") from None
        with archive:
            fields: dict[str, dict] = {}
            audio: dict[str, tuple[str, bytes]] = {}
            for member in archive:
                if not member.isfile():
                    continue
                key, _, suffix = member.name.rpartition(".")
                data = archive.extractfile(member).read()
                if f".{suffix}" == ".json":
                    try:
                        fields[key] = json.loads(data)
                    except ValueError:
                        raise InputError(f"{path}: {member.name} is not JSON") from None
                elif f".{suffix}" in AUDIO_SUFFIXES:
                    audio[key] = (member.name, data)
                if key in fields and key in audio:
                    yield _sample(path, key, fields.pop(key), *audio.pop(key))
            if fields or audio:
                lone = sorted(set(fields) | set(audio))[:3]
                raise InputError(f"{path}: members without their pair (audio or .json): {lone}")


def _sample(path: Path, key: str, fields: dict, name: str, data: bytes) -> ShardSample:
    try:
        entry = ManifestEntry(
            audio=f"{path}:{name}",
            text=fields["text"],
            lang=fields["lang"],
            duration=float(fields["duration"]),
            translation=fields.get("translation"),
            task=fields.get("task"),
            id=fields.get("id", key),
        )
    except KeyError as missing:
        raise InputError(f"{path}: {key}.json has no {missing.args[0]!r}") from None
    return ShardSample(entry, data)


def write_shards(
    entries: Iterable[ManifestEntry], out: str | os.PathLike, per_shard: int = 1000
) -> list[Path]:
    """Write ``entries`` into ``out/shard-000000.tar``, ... of ``per_shard`` utterances each.
    A whole file goes in as it is; a span (an entry with an offset) as FLAC. Each shard appears
    under its name only once complete."""
    out = Path(out)
    written: list[Path] = []
    archive = None

    def finish() -> None:
        archive.close()
        os.replace(_partial(written[-1]), written[-1])

    try:
        for count, entry in enumerate(entries):
            if count % per_shard == 0:
                if archive is not None:
                    finish()
                written.append(make_folder(out) / f"shard-{len(written):06d}.tar")
                archive = tarfile.open(_partial(written[-1]), "w")
            _add(archive, entry, entry.id or f"{count:09d}")
    except BaseException:
        if archive is not None:
            archive.close()
            _partial(written[-1]).unlink(missing_ok=True)
        raise
    if archive is not None:
        finish()
    return written


def _add(archive: tarfile.TarFile, entry: ManifestEntry, key: str) -> None:
    """One utterance into ``archive``: KEY.json and its audio."""
    if entry.offset is None and Path(entry.audio).suffix in AUDIO_SUFFIXES:
        name = f"{key}{Path(entry.audio).suffix}"
        data = check_input_file(entry.audio, "audio file").read_bytes()
    else:
        buffer = io.BytesIO()
        soundfile.write(buffer, load_entry_audio(entry), SAMPLE_RATE, format="FLAC")
        name, data = f"{key}.flac", buffer.getvalue()
    fields = {"text": entry.text, "lang": entry.lang, "duration": entry.duration, "id": key}
    for field in ("translation", "task"):
        if getattr(entry, field) is not None:
            fields[field] = getattr(entry, field)
    for member, payload in ((f"{key}.json", json.dumps(fields).encode()), (name, data)):
        info = tarfile.TarInfo(member)
        info.size = len(payload)
        archive.addfile(info, io.BytesIO(payload))


def _partial(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")
