"""CTC decoding: best path (greedy), beam search with a word n-gram (KenLM through pyctcdecode),
or prefix beam search with a character n-gram (ARPA, our own); all give every word's frames."""

from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from polyspeech.align.viterbi import align
from polyspeech.errors import DependencyError, InputError
from polyspeech.hub import ASSETS
from polyspeech.text.ngram import NgramLm, arpa_words, is_character_arpa, read_arpa
from polyspeech.text.vocab import BOS, EOS, PAD, UNK, WORD_DELIMITER, Vocabulary

BUILTIN_LM = {"builtin:ctc-lm": ASSETS / "ctc-lm"}  # its character n-grams, one per language


@dataclass(frozen=True)
class CharSpan:
    """One emitted character: first and last frame (inclusive) and its mean probability."""

    text: str
    start_frame: int
    end_frame: int
    score: float


@dataclass(frozen=True)
class WordSpan:
    """One word: first and last frame (inclusive) and the mean best-path probability."""

    text: str
    start_frame: int
    end_frame: int
    score: float


def greedy_decode(log_probs: np.ndarray, vocabulary: Vocabulary) -> list[CharSpan]:
    """Best path through (frames, vocab) log-probabilities: argmax, merge repeats, drop blanks.

    Spaces (the word delimiter) are kept as characters ``" "``; specials are dropped.
    """
    best = log_probs.argmax(axis=-1)
    best_scores = np.exp(log_probs[np.arange(len(best)), best])
    spans: list[CharSpan] = []
    start = 0
    for frame in range(1, len(best) + 1):
        if frame < len(best) and best[frame] == best[start]:
            continue
        token = int(best[start])
        text = vocabulary.token_text(token) if token != vocabulary.blank else ""
        if text:
            score = float(best_scores[start:frame].mean())
            spans.append(CharSpan(text, start, frame - 1, score))
        start = frame
    return spans


def spans_to_text(spans: list[CharSpan]) -> str:
    """The decoded text with single spaces and no space at either end."""
    return " ".join("".join(span.text for span in spans).split())


def group_words(spans: list[CharSpan], by_character: bool) -> list[WordSpan]:
    """Characters into words at spaces; with ``by_character`` (Chinese, ...) each is a word."""
    words: list[WordSpan] = []
    current: list[CharSpan] = []
    for span in [*spans, None]:
        if span is not None and span.text != " " and not by_character:
            current.append(span)
            continue
        if by_character and span is not None and span.text != " ":
            current = [span]
        if current:
            words.append(
                WordSpan(
                    "".join(s.text for s in current),
                    current[0].start_frame,
                    current[-1].end_frame,
                    float(np.mean([s.score for s in current])),
                )
            )
        current = []
    return words


class GreedyDecoder:
    """Best-path words."""

    def __init__(self, vocabulary: Vocabulary, by_character: bool) -> None:
        self.vocabulary = vocabulary
        self.by_character = by_character

    def words(self, log_probs: np.ndarray) -> list[WordSpan]:
        return group_words(greedy_decode(log_probs, self.vocabulary), self.by_character)


class LmBeamDecoder:
    """Beam search with a KenLM n-gram (ARPA or binary) over words, through pyctcdecode.

    ``alpha`` weighs the LM, ``beta`` rewards each word. The LM scores space-separated words,
    so it helps languages written with spaces.
    """

    def __init__(
        self,
        vocabulary: Vocabulary,
        lm_path: str | os.PathLike,
        alpha: float = 0.5,
        beta: float = 1.0,
        beam_width: int = 64,
    ) -> None:
        try:
            from pyctcdecode import build_ctcdecoder
        except ImportError:
            raise DependencyError(
                "beam search with an LM needs pyctcdecode and kenlm: pip install 'polyspeech[lm]'"
            ) from None
        if not Path(lm_path).is_file():
            raise InputError(f"{lm_path}: language model file not found")
        labels = [
            "" if token == PAD else " " if token == WORD_DELIMITER else token
            for token in vocabulary.tokens
        ]
        # pyctcdecode reads the words itself only from a plain .arpa; it needs them to tell
        # partial words from unknown ones (without them it decodes much worse)
        words = arpa_words(lm_path) if Path(lm_path).name.endswith(".arpa.gz") else None
        try:
            self._decoder = build_ctcdecoder(
                labels, str(lm_path), unigrams=words, alpha=alpha, beta=beta
            )
        except (OSError, RuntimeError, ValueError) as error:
            raise InputError(f"{lm_path}: cannot load the language model ({error})") from None
        self.beam_width = beam_width

    def words(self, log_probs: np.ndarray) -> list[WordSpan]:
        # a beam is (text, lm state, [(word, (first frame, end frame))], logit score, score)
        word_frames = self._decoder.decode_beams(log_probs, beam_width=self.beam_width)[0][2]
        best = np.exp(log_probs.max(axis=-1))
        return [
            WordSpan(word, start, end - 1, float(best[start:end].mean()))
            for word, (start, end) in word_frames
            if word.strip()
        ]


_LN10 = math.log(10.0)


def _logaddexp(a: float, b: float) -> float:
    if a < b:
        a, b = b, a
    return a if b == -math.inf else a + math.log1p(math.exp(b - a))


class CharLmBeamDecoder:
    """CTC prefix beam search scored with a character n-gram.

    A prefix's score is its CTC log-probability (blank- and non-blank-ending paths summed) plus
    ``alpha`` times its LM log-probability (natural log) plus ``beta`` per character; at the end
    the LM's ``</s>`` is added. Only tokens above ``prune`` (log-probability) are tried at each
    frame. The best text's frames come from an exact forced alignment of it (Viterbi).
    """

    def __init__(
        self,
        vocabulary: Vocabulary,
        lm: NgramLm,
        by_character: bool,
        alpha: float = 0.6,
        beta: float = 2.0,
        beam_width: int = 16,
        prune: float = -8.0,
    ) -> None:
        self.vocabulary, self.lm, self.by_character = vocabulary, lm, by_character
        self.alpha, self.beta = alpha, beta
        self.beam_width, self.prune = beam_width, prune
        specials = {PAD, BOS, EOS, UNK}
        self._usable = np.array([t not in specials for t in vocabulary.tokens])
        self._usable[vocabulary.blank] = False

    def _history(self, prefix: tuple[int, ...]) -> tuple[str, ...]:
        """The LM context of a prefix: ``<s>`` and its last tokens (the LM keeps what it uses)."""
        return (
            BOS,
            *(self.vocabulary.tokens[t] for t in prefix[max(0, len(prefix) - self.lm.order) :]),
        )

    def _lm_step(self, prefix: tuple[int, ...], token: int) -> float:
        step = self.lm.score(self._history(prefix), self.vocabulary.tokens[token])
        return self.alpha * _LN10 * step + self.beta

    def best_tokens(self, log_probs: np.ndarray) -> list[int]:
        blank, minus_inf = self.vocabulary.blank, -math.inf
        beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, minus_inf)}
        lm_scores: dict[tuple[int, ...], float] = {(): 0.0}
        for row in log_probs:
            candidates = [
                (int(t), float(row[t])) for t in np.flatnonzero((row > self.prune) & self._usable)
            ]
            blank_score = float(row[blank])
            following: dict[tuple[int, ...], list[float]] = {}
            for prefix, (blank_end, token_end) in beams.items():
                total = _logaddexp(blank_end, token_end)
                scores = following.setdefault(prefix, [minus_inf, minus_inf])
                scores[0] = _logaddexp(scores[0], total + blank_score)
                last = prefix[-1] if prefix else None
                for token, score in candidates:
                    extended = (*prefix, token)
                    if extended not in lm_scores:
                        lm_scores[extended] = lm_scores[prefix] + self._lm_step(prefix, token)
                    grown = following.setdefault(extended, [minus_inf, minus_inf])
                    if token == last:  # a repeat: the same prefix, or after a blank a new token
                        scores[1] = _logaddexp(scores[1], token_end + score)
                        grown[1] = _logaddexp(grown[1], blank_end + score)
                    else:
                        grown[1] = _logaddexp(grown[1], total + score)
            ranked = sorted(
                following.items(),
                key=lambda item: _logaddexp(*item[1]) + lm_scores[item[0]],
                reverse=True,
            )
            beams = {prefix: (scores[0], scores[1]) for prefix, scores in ranked[: self.beam_width]}

        def final(prefix: tuple[int, ...]) -> float:
            ending = self.alpha * _LN10 * self.lm.score(self._history(prefix), EOS)
            return _logaddexp(*beams[prefix]) + lm_scores[prefix] + ending

        return list(max(beams, key=final))

    def words(self, log_probs: np.ndarray) -> list[WordSpan]:
        tokens = self.best_tokens(log_probs)
        if not tokens:
            return []
        frames = align(log_probs, np.array(tokens), self.vocabulary.blank).token_frames()
        best = np.exp(log_probs.max(axis=-1))
        spans = [
            CharSpan(
                self.vocabulary.token_text(token),
                int(start),
                int(end) - 1,
                float(best[start:end].mean()),
            )
            for token, (start, end) in zip(tokens, frames, strict=True)
        ]
        return group_words(spans, self.by_character)


def toneless_classes(vocabulary: Vocabulary, lang: str | None) -> np.ndarray:
    """Each token's syllable without its tone, as a class id: tokens that espeak-ng reads
    (alone) as the same syllable in any tone share one; -1 for the blank, the specials, the word
    separator and tokens espeak-ng does not read."""
    return _toneless_classes(lang, tuple(vocabulary.tokens), frozenset(vocabulary.characters))


@functools.lru_cache(maxsize=4)
def _toneless_classes(
    lang: str | None, tokens: tuple[str, ...], characters: frozenset[str]
) -> np.ndarray:
    from polyspeech.tts.espeak import VOICES, get_espeak

    if lang not in VOICES:
        raise InputError(f"tone_weight for {lang!r}: no espeak-ng voice to read its syllables")
    ids: dict[str, int] = {}
    classes = np.full(len(tokens), -1)
    for index, token in enumerate(tokens):
        if token not in characters:
            continue
        syllable = get_espeak().reading(token, VOICES[lang], tone=False)
        if syllable:
            classes[index] = ids.setdefault(syllable, len(ids))
    return classes


class ToneMergingDecoder:
    """Another decoder on log-probabilities whose tones are (partly) merged, for a language
    whose tones the acoustic model hears less well than its syllables (Chinese from espeak-ng,
    whose tones span a few semitones): each frame's probability of a toneless syllable is
    shared among the tokens read so, in proportion to their own probability raised to
    ``tone_weight`` (1: unchanged; 0: equally), so that the LM chooses between them."""

    def __init__(self, decoder, classes: np.ndarray, tone_weight: float) -> None:
        self.decoder, self.tone_weight = decoder, tone_weight
        members = np.flatnonzero(classes >= 0)
        self._members = members[np.argsort(classes[members], kind="stable")]
        sorted_classes = classes[self._members]
        self._starts = np.flatnonzero(np.r_[True, sorted_classes[1:] != sorted_classes[:-1]])
        self._sizes = np.diff(np.r_[self._starts, len(self._members)])

    def merged(self, log_probs: np.ndarray) -> np.ndarray:
        """``log_probs`` (frames, vocab) with the tones of each syllable merged."""
        if not len(self._members):
            return log_probs
        probs = np.exp(log_probs[:, self._members].astype(np.float64))
        weighted = probs**self.tone_weight
        total = np.repeat(np.add.reduceat(probs, self._starts, axis=1), self._sizes, axis=1)
        norm = np.repeat(np.add.reduceat(weighted, self._starts, axis=1), self._sizes, axis=1)
        merged = log_probs.copy()
        with np.errstate(divide="ignore"):
            merged[:, self._members] = np.log(total * weighted / norm)
        return merged

    def words(self, log_probs: np.ndarray) -> list[WordSpan]:
        return self.decoder.words(self.merged(log_probs))


def load_character_lm(path: str | os.PathLike) -> NgramLm | None:
    """The character n-gram in ``path`` (read once per file version); None for a word LM."""
    path = Path(path).resolve()
    return _read_character_lm(path, path.stat().st_mtime)


@functools.lru_cache(maxsize=16)
def _read_character_lm(path: Path, modified: float) -> NgramLm | None:
    return read_arpa(path) if is_character_arpa(path) else None


def language_model_file(lm: str | os.PathLike, lang: str | None) -> Path:
    """The LM for ``lang``: ``lm`` itself, or in a folder (or a builtin name such as
    ``builtin:ctc-lm``) the file named for the language."""
    path = BUILTIN_LM.get(str(lm), Path(lm))
    if not path.is_dir():
        if not path.is_file():
            raise InputError(f"{path}: language model file not found")
        return path
    for name in (f"{lang}.arpa.gz", f"{lang}.arpa", f"{lang}.bin"):
        if (path / name).is_file():
            return path / name
    offered = sorted(
        {
            p.name.split(".")[0]
            for p in path.iterdir()
            if p.is_file() and p.name.endswith((".arpa", ".arpa.gz", ".bin"))
        }
    )
    raise InputError(
        f"{path}: no language model for {lang!r} ({lang}.arpa[.gz] or {lang}.bin); "
        f"it has: {', '.join(offered) or 'none'}"
    )


DECODING_SETTINGS = "decoding.json"


def decoding_settings(lm: str | os.PathLike, lang: str | None) -> dict[str, float | int]:
    """``lang``'s beam search settings (``alpha``, ``beta``, ``beam_width``, ``tone_weight``)
    from the file ``decoding.json`` of an LM folder, ``{lang: {name: value}}``, chosen on dev
    data (``recipes/default_ctc/tune_lm.py --write``); none (the decoder's defaults) without
    one."""
    path = BUILTIN_LM.get(str(lm), Path(lm)) / DECODING_SETTINGS
    if not path.is_file():
        return {}
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
        chosen = settings.get(lang, {}) if isinstance(settings, dict) else None
        if not isinstance(chosen, dict):
            raise ValueError("expected {language: {setting: value}}")
        unknown = set(chosen) - {"alpha", "beta", "beam_width", "tone_weight"}
        if unknown:
            raise ValueError(f"unknown setting {sorted(unknown)[0]!r} for {lang!r}")
        if not 0.0 <= float(chosen.get("tone_weight", 1.0)) <= 1.0:
            raise ValueError(f"tone_weight for {lang!r} must be between 0 and 1")
        return {
            name: int(value) if name == "beam_width" else float(value)
            for name, value in chosen.items()
        }
    except (TypeError, ValueError) as error:
        raise InputError(f"{path}: not a decoding settings file ({error})") from None


def make_decoder(
    vocabulary: Vocabulary,
    by_character: bool,
    lm: str | os.PathLike | None,
    lang: str | None,
    beam_size: int | None = None,
):
    """Greedy without ``lm``; with one, beam search with a character or a word n-gram, with the
    LM folder's settings for ``lang`` if it has them (:func:`decoding_settings`), tones merged
    where they set a ``tone_weight`` below 1 (:class:`ToneMergingDecoder`); ``beam_size`` in
    place of the settings' beam width."""
    if lm is None:
        return GreedyDecoder(vocabulary, by_character)
    path = language_model_file(lm, lang)
    settings = decoding_settings(lm, lang)
    if beam_size is not None:
        settings["beam_width"] = beam_size
    tone_weight = settings.pop("tone_weight", 1.0)
    model = load_character_lm(path)
    if model is not None:
        decoder = CharLmBeamDecoder(vocabulary, model, by_character, **settings)
    else:
        decoder = LmBeamDecoder(vocabulary, path, **settings)
    if tone_weight < 1.0:
        return ToneMergingDecoder(decoder, toneless_classes(vocabulary, lang), tone_weight)
    return decoder
