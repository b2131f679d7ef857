"""What recognition returns: dataclasses, times in seconds, serialisable to JSON without loss."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class Word:
    text: str
    start: float
    end: float
    score: float  # mean probability of the word's characters on the best path


@dataclass
class Segment:
    start: float
    end: float
    text: str
    words: list[Word] = field(default_factory=list)
    translation: str | None = None  # speech translation (into English), when asked for
    language: str | None = None  # the speech's: asked, or identified (heard)
    language_probability: float | None = None  # when the language was identified


@dataclass
class Result:
    text: str
    language: str | None  # the speech's, a translation's too: asked, or that of most of it
    segments: list[Segment] = field(default_factory=list)
    duration: float = 0.0
    translation: str | None = None
    language_probability: float | None = None  # identified: the file's probability of it
    # where it came from, so a figure can be reproduced: the model's ModelSource.describe()
    # (name as given, repository, resolved commit, hub)
    source: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Result:
        segments = [
            Segment(
                s["start"],
                s["end"],
                s["text"],
                [Word(**w) for w in s["words"]],
                s.get("translation"),
                s.get("language"),
                s.get("language_probability"),
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
