"""The synthetic multilingual speech corpus: sentences spoken by espeak-ng, 16 kHz FLAC + manifests.

Every clip is planned in the main process from the seed (sentence, voice variant, speaking rate,
pitch, silence, level, noise), then rendered in worker processes; the same seed gives the same
files. Splits hold disjoint sentences (by a hash of the normalised text, so a sentence lands in the
same split whatever the seed or size), and the test split is spoken only by voice variants that
train and dev never use. A clean corpus has no silence and no noise: speech from the first sample
to the last, as `polyspeech speak` gives it.
"""

from __future__ import annotations

import hashlib
import itertools
import multiprocessing
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import soxr

from polyspeech.audio import SAMPLE_RATE, write_audio
from polyspeech.data.manifest import ManifestEntry, write_manifest
from polyspeech.data.parallel import load_parallel_texts, pair_stream
from polyspeech.data.texts import sentence_stream, text_languages
from polyspeech.errors import DependencyError, InputError
from polyspeech.text.normalize import normalize_text
from polyspeech.tts.espeak import VOICES, get_espeak

# Voice variants (espeak-ng's voices/!v); "" is the language's own default voice.
TRAIN_VARIANTS = (
    *("", "m1", "m2", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f4", "f5"),
    *("Andy", "Annie", "adam", "anika", "benjamin", "david", "edward", "linda"),
    *("max", "michel", "paul", "robert", "steph", "travis", "victor", "gustave"),
)
TEST_VARIANTS = ("m3", "f3", "Andrea", "quincy")
SPLITS = (("train", 0.8), ("dev", 0.1), ("test", 0.1))
_GROUP = 16  # clips spoken by one worker process in a row


@dataclass(frozen=True)
class ClipPlan:
    """Everything needed to render one clip, drawn from the seed."""

    id: str
    lang: str
    split: str
    text: str
    source: str
    voice: str
    rate: int
    pitch: int
    lead: float  # seconds of silence before the speech
    tail: float  # and after it
    peak: float  # peak level of the speech
    snr_db: float | None  # white noise below the speech power; None: no noise
    noise_seed: int
    translation: str | None = None  # the English of a Chinese parallel sentence


def split_of(text: str, lang: str) -> str:
    """The split a sentence belongs to, from a hash of its normalised text."""
    digest = hashlib.sha256(f"{lang}\0{normalize_text(text, lang)}".encode()).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64
    bound = 0.0
    for name, share in SPLITS:
        bound += share
        if position < bound:
            return name
    return SPLITS[-1][0]


def _quotas(per_lang: int) -> dict[str, int]:
    quotas = {name: round(per_lang * share) for name, share in SPLITS[1:]}
    quotas[SPLITS[0][0]] = per_lang - sum(quotas.values())
    return quotas


def _draw_plan(
    rng: np.random.Generator,
    clip_id: str,
    lang: str,
    split: str,
    text: str,
    source: str,
    translation: str | None = None,
) -> ClipPlan:
    """The rendering settings of one clip, drawn from ``rng``; test splits get test voices."""
    variants = TEST_VARIANTS if split.startswith("test") else TRAIN_VARIANTS
    variant = variants[int(rng.integers(len(variants)))]
    return ClipPlan(
        id=clip_id,
        lang=lang,
        split=split,
        text=text,
        source=source,
        voice=f"{VOICES[lang]}+{variant}" if variant else VOICES[lang],
        rate=int(rng.integers(130, 201)),
        pitch=int(rng.integers(25, 76)),
        lead=float(rng.uniform(0.1, 0.6)),
        tail=float(rng.uniform(0.1, 0.6)),
        peak=float(rng.uniform(0.2, 0.9)),
        snr_db=float(rng.uniform(15.0, 40.0)),
        noise_seed=int(rng.integers(2**63)),
        translation=translation,
    )


def plan_corpus(
    langs: Sequence[str], per_lang: int, seed: int, clean: bool = False
) -> list[ClipPlan]:
    """Choose sentences and rendering settings for ``per_lang`` clips per language; ``clean``:
    without silence around the speech or noise."""
    plans: list[ClipPlan] = []
    for lang in langs:
        rng = np.random.default_rng([seed, text_languages().index(lang)])
        quotas = _quotas(per_lang)
        numbered = dict.fromkeys(quotas, 0)
        seen: set[str] = set()
        stream = sentence_stream(lang, rng)
        attempts = 0
        while any(quotas.values()):
            attempts += 1
            candidate = next(stream, None)
            if candidate is None or attempts > 100 * per_lang + 1000:
                raise InputError(
                    f"could not find {per_lang} distinct sentences for {lang} "
                    f"(still missing {quotas}); ask for fewer with --per-lang"
                )
            text, source = candidate
            key = normalize_text(text, lang)
            split = split_of(text, lang)
            if not key or key in seen or not quotas[split]:
                continue
            seen.add(key)
            quotas[split] -= 1
            clip_id = f"{lang}-{split}-{numbered[split]:06d}"
            numbered[split] += 1
            plan = _draw_plan(rng, clip_id, lang, split, text, source)
            plans.append(replace(plan, lead=0.0, tail=0.0, snr_db=None) if clean else plan)
    return plans


PARALLEL_LANGS = ("cmn", "eng")
SENTENCE_SHARE = 0.15  # of train and dev clips, spoken hand-written pairs


def plan_parallel(per_lang: int, seed: int) -> list[ClipPlan]:
    """Clips of the Chinese/English parallel text (:mod:`polyspeech.data.parallel`): per
    language ``per_lang`` split 80/10/10 by a hash of the Chinese side, so a pair's two sides
    share a split. Chinese clips carry the English as their translation. Train and dev draw
    hand-written pairs (train repeats them in other voices) and grammar sentences; test holds
    grammar sentences only, distinct, and the hand-written pairs of the test split are spoken
    once each into ``test_sentences``: free-form text, for reporting apart."""
    return [plan for lang in PARALLEL_LANGS for plan in _plan_parallel_lang(lang, per_lang, seed)]


def _plan_parallel_lang(lang: str, per_lang: int, seed: int) -> list[ClipPlan]:
    plans: list[ClipPlan] = []
    rng = np.random.default_rng([seed, 1000 + PARALLEL_LANGS.index(lang)])
    quotas = _quotas(per_lang)
    numbered = dict.fromkeys([*quotas, "test_sentences"], 0)
    seen: set[str] = set()
    stream = pair_stream(rng, SENTENCE_SHARE)

    def add(split: str, pair: tuple[str, str], source: str) -> None:
        cmn, eng = pair
        clip_id = f"{lang}-{split}-{numbered[split]:06d}"
        numbered[split] += 1
        text, translation = (cmn, eng) if lang == "cmn" else (eng, None)
        plans.append(_draw_plan(rng, clip_id, lang, split, text, source, translation))

    for attempt in itertools.count():
        if not any(quotas.values()):
            break
        if attempt > 100 * per_lang + 1000:
            raise InputError(
                f"could not find {per_lang} distinct parallel sentences for {lang} "
                f"(still missing {quotas}); ask for fewer with --per-lang"
            )
        pair, source = next(stream)
        key = normalize_text(pair[0], "cmn")
        split = split_of(pair[0], "cmn")
        if not quotas[split] or (split == "test" and source == "sentence"):
            continue
        if key in seen and not (split == "train" and source == "sentence"):
            continue
        seen.add(key)
        quotas[split] -= 1
        add(split, pair, source)
    for pair in load_parallel_texts().pairs:
        if split_of(pair[0], "cmn") == "test":
            add("test_sentences", pair, "sentence")
    return plans


def render_clip(plan: ClipPlan, out: Path) -> ManifestEntry:
    """Speak one planned clip and write it as 16 kHz FLAC under ``out``."""
    espeak = get_espeak()
    speech = espeak.synthesize(plan.text, plan.voice, plan.rate, plan.pitch, seed=plan.noise_seed)
    speech = soxr.resample(speech, espeak.sample_rate, SAMPLE_RATE, quality="HQ")
    level = float(np.abs(speech).max()) if speech.size else 0.0
    if level < 1e-3:
        raise InputError(f"espeak-ng produced silence for {plan.id} ({plan.voice}): {plan.text!r}")
    speech = speech * (plan.peak / level)
    power = float(np.mean(speech**2))
    signal = np.concatenate(
        [
            np.zeros(round(plan.lead * SAMPLE_RATE), np.float32),
            speech,
            np.zeros(round(plan.tail * SAMPLE_RATE), np.float32),
        ]
    )
    if plan.snr_db is not None:
        noise = np.random.default_rng(plan.noise_seed).standard_normal(len(signal))
        signal = np.clip(signal + noise * np.sqrt(power / 10 ** (plan.snr_db / 10)), -1.0, 1.0)
    path = out / "audio" / plan.lang / f"{plan.id}.flac"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_audio(path, signal)
    return ManifestEntry(
        audio=str(path),
        text=plan.text,
        lang=plan.lang,
        duration=len(signal) / SAMPLE_RATE,
        id=plan.id,
        translation=plan.translation,
        extra={
            "voice": plan.voice,
            "rate": plan.rate,
            "pitch": plan.pitch,
            "snr_db": None if plan.snr_db is None else round(plan.snr_db, 1),
            "source": plan.source,
        },
    )


def _render_group(job: tuple[list[ClipPlan], Path]) -> list[ManifestEntry]:
    group, out = job
    return [render_clip(plan, out) for plan in group]


def check_voices(langs: Sequence[str]) -> None:
    """Fail early, naming the language, when espeak-ng lacks a voice the corpus needs."""
    espeak = get_espeak()
    for lang in langs:
        for variant in (*TRAIN_VARIANTS, *TEST_VARIANTS):
            voice = f"{VOICES[lang]}+{variant}" if variant else VOICES[lang]
            if not espeak.has_voice(voice):
                raise DependencyError(f"espeak-ng has no voice {voice!r} for language {lang}")


def synthesize_corpus(
    out: str | os.PathLike,
    langs: Sequence[str],
    per_lang: int,
    seed: int = 0,
    jobs: int | None = None,
    on_clip: Callable[[], None] | None = None,
    clean: bool = False,
) -> dict[str, int]:
    """Render the corpus under ``out``: ``audio/<lang>/<id>.flac`` and ``<split>.jsonl``;
    ``clean``, without silence or noise (:func:`plan_corpus`).

    ``on_clip`` is called after each clip (for a progress bar). Returns clips per split.
    """
    unknown = [lang for lang in langs if lang not in VOICES]
    if unknown:
        raise InputError(
            f"no synthetic corpus for {', '.join(unknown)}; available: {', '.join(VOICES)}"
        )
    _check_count(per_lang)
    check_voices(langs)
    return render_plans(plan_corpus(langs, per_lang, seed, clean), Path(out), jobs, on_clip)


def synthesize_parallel(
    out: str | os.PathLike,
    per_lang: int,
    seed: int = 0,
    jobs: int | None = None,
    on_clip: Callable[[], None] | None = None,
) -> dict[str, int]:
    """Render the Chinese/English parallel corpus (:func:`plan_parallel`) under ``out``."""
    _check_count(per_lang)
    check_voices(PARALLEL_LANGS)
    return render_plans(plan_parallel(per_lang, seed), Path(out), jobs, on_clip)


def _check_count(per_lang: int) -> None:
    if per_lang < 1:
        raise InputError(f"--per-lang must be at least 1, got {per_lang}")


def render_plans(
    plans: list[ClipPlan], out: Path, jobs: int | None, on_clip: Callable[[], None] | None
) -> dict[str, int]:
    """Speak ``plans`` into ``out`` and write one manifest per split; clips per split."""
    entries: dict[str, list[ManifestEntry]] = {name: [] for name, _ in SPLITS}
    for plan in plans:
        entries.setdefault(plan.split, [])
    # espeak-ng carries state from one utterance to the next (its output depends on what it
    # spoke before), so each fixed group of clips is spoken by a fresh process forked from a
    # server process that has not spoken: the audio depends on the plan alone, not on --jobs
    # or on which worker happened to take a group.
    groups = [plans[start : start + _GROUP] for start in range(0, len(plans), _GROUP)]
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(groups)))
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["polyspeech.data.synth"])
    with context.Pool(jobs, maxtasksperchild=1) as pool:
        rendered = pool.imap(_render_group, [(group, out) for group in groups])
        for group, group_entries in zip(groups, rendered, strict=True):
            for plan, entry in zip(group, group_entries, strict=True):
                entries[plan.split].append(entry)
                if on_clip is not None:
                    on_clip()
    for name, split_entries in entries.items():
        write_manifest(out / f"{name}.jsonl", split_entries)
    return {name: len(split_entries) for name, split_entries in entries.items()}
