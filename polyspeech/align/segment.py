"""MMS-style data preparation: a long recording cut into one clip per transcript line."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from polyspeech.audio import SAMPLE_RATE, write_audio
from polyspeech.data.manifest import ManifestEntry, write_manifest
from polyspeech.results import Span

PAD = 0.1  # seconds of audio kept either side of a line, never past the middle of a gap


def write_segments(
    samples: np.ndarray,
    lines: list[Span],
    lang: str,
    name: str,
    out_dir: str | os.PathLike,
    min_score: float,
) -> list[int]:
    """Write ``out_dir/audio/<name>-<line>.flac`` per line and ``out_dir/manifest.jsonl``;
    lines scoring under ``min_score`` are kept with ``low_score: true``. Returns their indices."""
    out_dir = Path(out_dir)
    (out_dir / "audio").mkdir(parents=True, exist_ok=True)
    total = len(samples) / SAMPLE_RATE
    entries, flagged = [], []
    for number, span in enumerate(lines):
        before = lines[number - 1].end if number else 0.0
        after = lines[number + 1].start if number + 1 < len(lines) else total
        start = max(span.start - PAD, (before + span.start) / 2, 0.0)
        end = min(span.end + PAD, (span.end + after) / 2, total)
        clip = samples[round(start * SAMPLE_RATE) : round(end * SAMPLE_RATE)]
        path = out_dir / "audio" / f"{name}-{number:05d}.flac"
        write_audio(path, clip)
        low = span.score < min_score
        if low:
            flagged.append(number)
        extra = {"offset_in_source": round(start, 3), "score": span.score, "low_score": low}
        entries.append(
            ManifestEntry(
                str(path), span.text, lang, len(clip) / SAMPLE_RATE, id=path.stem, extra=extra
            )
        )
    write_manifest(out_dir / "manifest.jsonl", entries)
    return flagged
