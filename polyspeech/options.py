"""How to recognise speech, one set of options for both model families, in the names whisper and
faster-whisper use: ``transcribe(audio, language=..., task=..., word_timestamps=..., beam_size=...,
vad_filter=..., vad_parameters=VadOptions(...), batch_size=...)``.

:class:`Recognizer` gives a CTC model and a speech LLM the same keyword-only ``transcribe``,
``transcribe_many`` and ``segments``; each family implements ``_recognise``. The spellings of
before (``lang``, ``vad``, ``vad_threshold``, tasks ``asr``/``ast``, options by position) still
work for one release, with a :class:`DeprecationWarning` naming the new one.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields, replace

import numpy as np

from polyspeech.audio import SAMPLE_RATE, load_audio
from polyspeech.audio.vad import CHUNK as VAD_CHUNK
from polyspeech.audio.vad import check_threshold
from polyspeech.errors import InputError
from polyspeech.results import Result, Segment
from polyspeech.text.languages import join_words

# whisper's task names, and what a speech LLM's prompt calls each (MooER's asr and ast)
TASKS = ("transcribe", "translate", "transcribe+translate")
PROMPT_TASK = dict(zip(TASKS, ("asr", "ast", "asr+ast"), strict=True))
OLD_TASKS = {old: new for new, old in PROMPT_TASK.items()}
AUTO = "auto"  # the language: identified (per piece by a CTC model's LID; heard by an LLM)
# the keyword names of before, and the option each became
RENAMED = {"lang": "language", "vad": "vad_filter"}


@dataclass(frozen=True)
class VadOptions:
    """Voice activity detection (silero-vad): ``threshold`` is the speech probability above
    which a frame is speech (lower finds speech under music or noise)."""

    threshold: float = 0.5

    def __post_init__(self) -> None:
        check_threshold(self.threshold)


@dataclass(frozen=True)
class TranscribeOptions:
    """What ``transcribe`` does; every field has the same meaning for both families.

    ``language``: ISO 639-1 or -3, ``auto`` or None (a CTC model of several languages then
    identifies each segment's; a speech LLM hears it). ``task``: ``transcribe``, ``translate``
    (into English; speech LLMs) or ``transcribe+translate`` (both). ``word_timestamps``: each
    segment's words with times (a CTC model always gives them; a speech LLM aligns its text
    with ``aligner`` when asked). ``beam_size``: the beam search's width (a speech LLM's
    decoding, a CTC model's LM search; None: the model's own). ``vad_filter``: cut at speech
    regions, else 30 s windows. ``batch_size``: pieces of up to 30 s per forward pass (None:
    the family's default). ``lm``: a CTC model's n-gram (None: its own; ``none``: greedy).
    ``lid``: the language-ID model of a CTC model's language ``auto``. ``cross_check``: the CTC
    model (loaded, a folder or a builtin name; None: no check) a speech LLM's transcript of each
    segment is compared with, giving the segment's ``agreement`` and ``flagged`` below
    ``agreement_threshold``."""

    language: str | None = None
    task: str = "transcribe"
    word_timestamps: bool = False
    beam_size: int | None = None
    vad_filter: bool = True
    vad_parameters: VadOptions = field(default_factory=VadOptions)
    batch_size: int | None = None
    lm: object = None
    lid: object = "builtin:lid"
    aligner: object = "builtin:align"
    cross_check: object = "builtin:ctc"
    agreement_threshold: float = 0.1

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise InputError(f"unknown task {self.task!r}; use {', '.join(TASKS)}")
        for name in ("beam_size", "batch_size"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
                raise InputError(f"{name} must be a whole number of at least 1, got {value!r}")
        if isinstance(self.vad_parameters, dict):  # as faster-whisper takes them
            object.__setattr__(self, "vad_parameters", VadOptions(**self.vad_parameters))


OPTION_NAMES = frozenset(f.name for f in fields(TranscribeOptions))


def _deprecated(old: str, new: str) -> None:
    warnings.warn(
        f"polyspeech: {old} is deprecated, use {new}; the old spelling goes in the next release",
        DeprecationWarning,
        stacklevel=4,
    )


def make_options(
    options: TranscribeOptions | None,
    positional: Sequence,
    order: Sequence[str],
    keywords: dict,
    method: str,
) -> TranscribeOptions:
    """``options`` with ``keywords`` (the new names, or the old with a warning) and options
    given by position as ``order`` named them before (with a warning) in place."""
    if len(positional) > len(order):
        raise TypeError(f"{method}() takes at most {len(order)} options by position")
    # by position, under the new names: one warning (of the position) says it all
    named = {RENAMED.get(name, name): value for name, value in zip(order, positional, strict=False)}
    for name, value in keywords.items():
        if name in named:
            raise TypeError(f"{method}() got {name!r} twice")
        named[name] = value
    chosen: dict = {}
    renamed: list[tuple[str, str]] = []  # (old spelling, new), warned of once all is checked
    if positional:
        renamed.append((f"{method}() options by position", f"keywords ({', '.join(named)}=...)"))
    for name, value in named.items():
        if name in RENAMED:
            renamed.append((f"{name}=", f"{RENAMED[name]}="))
            name = RENAMED[name]
        elif name == "vad_threshold":
            renamed.append(("vad_threshold=", "vad_parameters=VadOptions(threshold=...)"))
            name, value = "vad_parameters", VadOptions(value)
        elif name == "task" and value in OLD_TASKS:
            renamed.append((f"task={value!r}", f"task={OLD_TASKS[value]!r}"))
            value = OLD_TASKS[value]
        elif name not in OPTION_NAMES:
            raise TypeError(f"{method}() got an unexpected keyword argument {name!r}")
        if name in chosen:
            raise TypeError(f"{method}() got {name!r} twice")
        chosen[name] = value
    for old, new in renamed:
        _deprecated(old, new)
    return replace(options or TranscribeOptions(), **chosen)


class Recognizer:
    """``transcribe``, ``transcribe_many`` and ``segments`` with :class:`TranscribeOptions`, for
    a model family that implements ``_recognise(clips, languages, options)`` (16 kHz float32
    samples, a language or None each; a :class:`Result` each) and says which options it takes
    by position from before (``LEGACY_ORDER``)."""

    LEGACY_ORDER: tuple[str, ...] = ()
    TASKS: tuple[str, ...] = TASKS  # the tasks this family does

    def check(self, options: TranscribeOptions) -> None:
        """An :class:`InputError` for options this model cannot follow."""
        if options.task not in self.TASKS:
            name = getattr(getattr(self, "source", None), "name", type(self).__name__)
            raise InputError(
                f"{name}: task {options.task} is not one this model does ({', '.join(self.TASKS)})"
            )

    def _recognise(
        self, clips: list[np.ndarray], languages: list[str | None], options: TranscribeOptions
    ) -> list[Result]:
        raise NotImplementedError

    def transcribe(
        self,
        audio,
        *legacy,
        options: TranscribeOptions | None = None,
        sample_rate: int = SAMPLE_RATE,
        **keywords,
    ) -> Result:
        """Recognise ``audio`` of any length: a path, bytes, a file object, or samples (a
        NumPy array or torch tensor at ``sample_rate``). Options: :class:`TranscribeOptions`'
        fields as keywords, or ``options``."""
        chosen = make_options(options, legacy, self.LEGACY_ORDER, keywords, "transcribe")
        self.check(chosen)
        return self._recognise([_samples(audio, sample_rate)], [chosen.language], chosen)[0]

    def transcribe_many(
        self,
        audios: Sequence,
        *legacy,
        options: TranscribeOptions | None = None,
        sample_rate: int = SAMPLE_RATE,
        **keywords,
    ) -> list[Result]:
        """Several inputs at once, their pieces batched together; ``language`` may be one for
        all or a list, one per input. One :class:`Result` each, in order."""
        order = ("language", *self.LEGACY_ORDER[1:])
        chosen = make_options(options, legacy, order, keywords, "transcribe_many")
        self.check(chosen)
        languages = chosen.language
        if not isinstance(languages, list | tuple):
            languages = [languages] * len(audios)
        if len(languages) != len(audios):
            raise InputError(f"{len(languages)} languages for {len(audios)} inputs")
        clips = [_samples(audio, sample_rate) for audio in audios]
        return self._recognise(clips, list(languages), replace(chosen, language=None))

    def segments(
        self,
        audio,
        *,
        options: TranscribeOptions | None = None,
        sample_rate: int = SAMPLE_RATE,
        **keywords,
    ) -> tuple[Iterator[Segment], Result]:
        """faster-whisper's form: ``segments, info = model.segments(audio)``; ``segments`` yields
        each segment in order as the pieces of up to 30 s around it are recognised (a few at a
        time, ``batch_size``), so a long file's first words come before its end is heard;
        ``info`` is the whole file's :class:`Result`, its text, language and segments filled in
        as the iteration ends."""
        from polyspeech.audio.vad import pieces

        chosen = make_options(options, (), (), keywords, "segments")
        self.check(chosen)
        samples = _samples(audio, sample_rate)
        info = Result("", None, [], round(len(samples) / SAMPLE_RATE, 3))
        spans = pieces(
            [samples], 30.0, chosen.vad_filter, threshold=chosen.vad_parameters.threshold
        )
        groups = _groups(spans[0], chosen.batch_size or 4, len(samples))

        def run() -> Iterator[Segment]:
            texts, translations, heard = [], [], []
            for start, end in groups:
                part = self._recognise([samples[start:end]], [chosen.language], chosen)[0]
                shift = start / SAMPLE_RATE
                for segment in part.segments:
                    moved = _shifted(segment, shift)
                    info.segments.append(moved)
                    yield moved
                texts.append(part.text)
                if part.translation:
                    translations.append(part.translation)
                heard.append((end - start, part.language))
            languages = [language for _, language in sorted(heard, key=lambda h: -h[0])]
            info.language = languages[0] if languages else chosen.language
            written = "eng" if chosen.task == "translate" else info.language
            info.text = join_words(texts, written)
            info.translation = " ".join(translations) if translations else None

        return run(), info


def _samples(audio, sample_rate: int) -> np.ndarray:
    """16 kHz mono float32 samples of anything :func:`load_audio` takes, or a torch tensor."""
    if type(audio).__module__ == "torch" and type(audio).__name__ == "Tensor":
        audio = audio.detach().cpu().float().numpy()
    rate = sample_rate if isinstance(audio, np.ndarray) else None
    return load_audio(audio, source_rate=rate)


def _groups(spans: list[tuple[int, int]], size: int, total: int) -> list[tuple[int, int]]:
    """The sample ranges ``segments`` recognises in turn: ``size`` consecutive speech regions
    each, cut halfway through the silence between groups (the whole file, once) on a boundary
    of VAD's chunks, so that each range's VAD hears the chunks the whole file's did and finds
    its regions where that did, and none starts at a cut."""
    firsts = list(range(0, len(spans), size))
    middles = [(spans[i - 1][1] + spans[i][0]) // 2 for i in firsts[1:]]
    cuts = [0] + [middle - middle % VAD_CHUNK for middle in middles] + [total]
    return list(itertools.pairwise(cuts))


def _shifted(segment: Segment, seconds: float) -> Segment:
    """``segment`` and its words ``seconds`` later."""
    words = [
        replace(word, start=round(word.start + seconds, 3), end=round(word.end + seconds, 3))
        for word in segment.words
    ]
    return replace(
        segment,
        start=round(segment.start + seconds, 3),
        end=round(segment.end + seconds, 3),
        words=words,
    )
