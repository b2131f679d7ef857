"""The synthetic multilingual speech corpus: sentences spoken by espeak-ng, 16 kHz FLAC + manifests.

Every clip is planned in the main process from the seed (sentence, voice variant, speaking rate,
pitch, silence, level, noise), then rendered in worker processes; the same seed gives the same
files. Splits hold disjoint sentences (by a hash of the normalised text, so a sentence lands in the
same split whatever the seed or size), and the test split is spoken only by voice variants that
train and dev never use. A clean corpus has no silence and no noise: speech from the first sample
to the last, as `polyspeech speak` gives it.
"""

from __future__ import annotations

import functools
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
from polyspeech.data.augment import AugmentConfig, augment, room_bank
from polyspeech.data.manifest import ManifestEntry, write_manifest
from polyspeech.data.parallel import load_parallel_texts, pair_stream
from polyspeech.data.texts import sentence_stream, text_languages
from polyspeech.errors import DependencyError, InputError
from polyspeech.text.normalize import normalize_text
from polyspeech.tts.espeak import VOICES, get_espeak
from polyspeech.tts.voices import REGISTRY, check_installed, get_voice, speak_with, voices_for

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
    real_voice: str | None = None  # a voice of polyspeech.tts.voices; None: espeak-ng's
    augment_seed: int | None = None  # the seed of its acoustic augmentation; None: none


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


# Real-speaker voices that only test splits use, so that a test measures unseen speakers.
REAL_TEST_VOICES = ("kokoro:jf_tebukuro", "flite:awb", "festival:pc_diphone")


def plan_corpus(
    langs: Sequence[str],
    per_lang: int,
    seed: int,
    clean: bool = False,
    real_voices: Sequence[str] = (),
    augment_share: float = 0.0,
) -> list[ClipPlan]:
    """Choose sentences and rendering settings for ``per_lang`` clips per language; ``clean``:
    without silence around the speech or noise.

    ``real_voices`` (engines such as ``kokoro``, or voice names such as ``flite:slt``): each
    clip of a language that one of them speaks is spoken by one drawn at random, test clips by
    :data:`REAL_TEST_VOICES` only, train and dev clips never by those. ``augment_share``: the
    share of clips put through :func:`polyspeech.data.augment.augment`."""
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
            if clean:
                plan = replace(plan, lead=0.0, tail=0.0, snr_db=None)
            if pool := _real_pool(lang, split, real_voices):
                plan = replace(plan, real_voice=pool[int(rng.integers(len(pool)))])
            if augment_share and rng.random() < augment_share:
                plan = replace(plan, augment_seed=int(rng.integers(2**63)))
            plans.append(plan)
    return plans


def _real_pool(lang: str, split: str, wanted: Sequence[str]) -> list[str]:
    """The real-speaker voices among ``wanted`` that may speak ``lang``'s ``split``."""
    names = [
        voice.name for voice in voices_for(lang) if voice.name in wanted or voice.engine in wanted
    ]
    held = split.startswith("test")
    return [name for name in names if (name in REAL_TEST_VOICES) == held]


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


def _speech(plan: ClipPlan) -> np.ndarray:
    if plan.real_voice is not None:
        return speak_with(plan.real_voice, plan.text, plan.lang)
    espeak = get_espeak()
    speech = espeak.synthesize(plan.text, plan.voice, plan.rate, plan.pitch, seed=plan.noise_seed)
    return soxr.resample(speech, espeak.sample_rate, SAMPLE_RATE, quality="HQ")


def render_clip(plan: ClipPlan, out: Path) -> ManifestEntry:
    """Speak one planned clip and write it as 16 kHz FLAC under ``out``."""
    speech = _speech(plan)
    voice = plan.real_voice or plan.voice
    level = float(np.abs(speech).max()) if speech.size else 0.0
    if level < 1e-3:
        raise InputError(f"{voice} produced silence for {plan.id}: {plan.text!r}")
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
    augmented = None
    if plan.augment_seed is not None:
        rooms, others = _augment_sources(out)
        rng = np.random.default_rng(plan.augment_seed)
        signal, augmented = augment(signal, rng, AugmentConfig(), rooms, others)
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
            "voice": voice,
            "rate": plan.rate,
            "pitch": plan.pitch,
            "snr_db": None if plan.snr_db is None else round(plan.snr_db, 1),
            "source": plan.source,
            **({} if augmented is None else {"augment": augmented}),
        },
    )


AUGMENT_SOURCES = "augment_sources.npz"  # rooms and babble talkers, made once per corpus
_ROOMS = 200
_TALKERS = 60


@functools.lru_cache(maxsize=1)
def _augment_sources(out: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    with np.load(out / AUGMENT_SOURCES) as data:
        rooms = [data[name] for name in data.files if name.startswith("room")]
        talkers = [data[name] for name in data.files if name.startswith("talker")]
    return rooms, talkers


def _write_augment_sources(plans: Sequence[ClipPlan], out: Path, seed: int) -> None:
    """Room responses and babble talkers for the corpus's augmented clips, from the seed:
    simulated rooms when pyroomacoustics is installed (else synthetic ones), and talkers spoken
    by espeak-ng from train sentences."""
    try:
        import pyroomacoustics  # noqa: F401

        kind = "simulated"
    except ImportError:
        kind = "synthetic"
    rng = np.random.default_rng([seed, 7])
    rooms = room_bank(rng, _ROOMS, kind)
    arrays = {f"room{i}": room.astype(np.float32) for i, room in enumerate(rooms)}
    train = [plan for plan in plans if plan.split == "train" and plan.real_voice is None]
    for i in rng.permutation(len(train))[:_TALKERS]:
        arrays[f"talker{i}"] = _speech(train[i])
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / AUGMENT_SOURCES, **arrays)


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
    real_voices: Sequence[str] = (),
    augment_share: float = 0.0,
) -> dict[str, int]:
    """Render the corpus under ``out``: ``audio/<lang>/<id>.flac`` and ``<split>.jsonl``;
    ``clean``, without silence or noise; ``real_voices`` and ``augment_share`` as
    :func:`plan_corpus` takes them.

    ``on_clip`` is called after each clip (for a progress bar). Returns clips per split.
    """
    unknown = [lang for lang in langs if lang not in VOICES]
    if unknown:
        raise InputError(
            f"no synthetic corpus for {', '.join(unknown)}; available: {', '.join(VOICES)}"
        )
    _check_count(per_lang)
    if not 0.0 <= augment_share <= 1.0:
        raise InputError(f"--augment-share must be between 0 and 1, got {augment_share}")
    _check_real_voices(real_voices)
    check_voices(langs)
    plans = plan_corpus(langs, per_lang, seed, clean, real_voices, augment_share)
    _check_real_voices(real_voices, plans)
    if any(plan.augment_seed is not None for plan in plans):
        _write_augment_sources(plans, Path(out), seed)
    return render_plans(plans, Path(out), jobs, on_clip)


def _check_real_voices(wanted: Sequence[str], plans: Sequence[ClipPlan] = ()) -> None:
    """Fail early when a wanted voice or engine names nothing, or (with the install command)
    when a voice the plans use is not installed."""
    engines = {voice.engine for voice in REGISTRY.values()}
    for name in wanted:
        if name not in engines:
            get_voice(name)
    for name in sorted({plan.real_voice for plan in plans if plan.real_voice}):
        check_installed(get_voice(name))


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
