"""What recognition returns: dataclasses, times in seconds, serialisable to JSON without loss."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field


@dataclass
class Word:
    """A word and its time, in whisper's names."""

    word: str
    start: float
    end: float
    probability: float  # mean probability of the word's characters on the best path


@dataclass
class Segment:
    start: float
    end: float
    text: str
    words: list[Word] = field(default_factory=list)
    translation: str | None = None  # speech translation (into English), when asked for
    language: str | None = None  # the speech's: asked, or identified (heard)
    language_probability: float | None = None  # when the language was identified
    id: int = 0  # its place in the result, from 0
    # a speech LLM's text checked against a CTC recogniser's on the same audio: 1 - their
    # character error rate (floored at 0), and flagged below the threshold (it may be invented)
    agreement: float | None = None
    flagged: bool = False

    @property
    def avg_logprob(self) -> float | None:
        """The mean log probability of its words (None without words: a speech LLM's text
        not aligned)."""
        found = [word.probability for word in self.words if word.probability > 0]
        if not found:
            return None
        return round(sum(math.log(p) for p in found) / len(found), 4)


@dataclass
class Result:
    """What recognition returns; :meth:`to_dict` is the JSON the command line writes and the
    server's ``verbose_json`` builds on: segments with ``id`` and ``avg_logprob``, words with
    ``word``, ``start``, ``end`` and ``probability``, as whisper names them."""

    text: str
    language: str | None  # the speech's, a translation's too: asked, or that of most of it
    segments: list[Segment] = field(default_factory=list)
    duration: float = 0.0
    translation: str | None = None
    language_probability: float | None = None  # identified: the file's probability of it
    # where it came from, so a figure can be reproduced: the model's ModelSource.describe()
    # (name as given, repository, resolved commit, hub)
    source: dict | None = None

    def __post_init__(self) -> None:
        for index, segment in enumerate(self.segments):
            segment.id = index

    def to_dict(self) -> dict:
        data = asdict(self)
        for index, (segment, row) in enumerate(zip(self.segments, data["segments"], strict=True)):
            row["id"] = index
            row["avg_logprob"] = segment.avg_logprob
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Result:
        """The result of a :meth:`to_dict`; words written before they had whisper's names
        (``text`` and ``score``) read too."""
        segments = [
            Segment(
                s["start"],
                s["end"],
                s["text"],
                [
                    Word(
                        w.get("word", w.get("text")),
                        w["start"],
                        w["end"],
                        w.get("probability", w.get("score")),
                    )
                    for w in s["words"]
                ],
                s.get("translation"),
                s.get("language"),
                s.get("language_probability"),
                agreement=s.get("agreement"),
                flagged=s.get("flagged", False),
            )
            for s in data["segments"]
        ]
        return cls(
            data["text"],
            data["language"],
            segments,
            data.get("duration", 0.0),
            data.get("translation"),
            data.get("language_probability"),
            data.get("source"),
        )


@dataclass(frozen=True)
class Span:
    """What alignment returns: a piece of the transcript as written, its time in seconds, and
    its confidence (the mean probability of its tokens over their frames on the best path)."""

    text: str
    start: float
    end: float
    score: float

    def to_dict(self) -> dict:
        return asdict(self)
