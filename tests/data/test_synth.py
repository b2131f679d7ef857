import json

import numpy as np
import pytest
import soundfile

from polyspeech.audio import load_audio
from polyspeech.data import synth
from polyspeech.data.manifest import read_manifest
from polyspeech.text import normalize_text
from polyspeech.tts import espeak, voices


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The issue's example: 50 clips each of English, German and Mandarin."""
    out = tmp_path_factory.mktemp("corpus")
    counts = synth.synthesize_corpus(out, ["eng", "deu", "cmn"], 50, seed=3, jobs=2)
    return out, counts


def entries_of(out):
    return {name: list(read_manifest(out / f"{name}.jsonl")) for name in ("train", "dev", "test")}


def test_counts_and_splits(corpus):
    out, counts = corpus
    assert counts == {"train": 120, "dev": 15, "test": 15}
    splits = entries_of(out)
    for name, entries in splits.items():
        for lang in ("eng", "deu", "cmn"):
            assert sum(e.lang == lang for e in entries) == {"train": 40}.get(name, 5)
    keys = {
        name: {(e.lang, normalize_text(e.text, e.lang)) for e in es} for name, es in splits.items()
    }
    assert len(keys["train"]) == 120  # no sentence twice
    assert not keys["train"] & keys["dev"] and not keys["train"] & keys["test"]
    assert not keys["dev"] & keys["test"]


def test_test_voices_are_never_heard_in_training(corpus):
    splits = entries_of(corpus[0])
    variant = lambda e: e.extra["voice"].partition("+")[2]  # noqa: E731
    assert {variant(e) for e in splits["test"]} <= set(synth.TEST_VARIANTS)
    seen = {variant(e) for e in splits["train"] + splits["dev"]}
    assert seen <= set(synth.TRAIN_VARIANTS) and not seen & set(synth.TEST_VARIANTS)
    assert len(seen) > 10


def test_files_are_playable_16k_flac_with_the_declared_duration(corpus):
    for entries in entries_of(corpus[0]).values():
        for entry in entries:
            info = soundfile.info(entry.audio)
            assert (info.format, info.samplerate, info.channels) == ("FLAC", 16000, 1)
            assert abs(info.frames / 16000 - entry.duration) < 1e-3


def test_no_file_is_silent(corpus):
    """The loudest 100 ms of every clip stands well above its quietest (noise only) 100 ms."""
    for entries in entries_of(corpus[0]).values():
        for entry in entries:
            frames = load_audio(entry.audio)[: (len(load_audio(entry.audio)) // 1600) * 1600]
            energy = (frames.reshape(-1, 1600) ** 2).mean(axis=1)
            assert 10 * np.log10(energy.max() / energy.min()) > 12, entry.id


def speech_seconds(entry):
    """Duration of the speech alone: frames more than 15 dB above the noise floor."""
    samples = load_audio(entry.audio)
    energy = (samples[: len(samples) // 320 * 320].reshape(-1, 320) ** 2).mean(axis=1)
    floor = np.percentile(energy, 5)
    active = np.flatnonzero(energy > floor * 10**1.5)
    return (active[-1] - active[0] + 1) * 0.02


def test_duration_grows_with_text_length(corpus):
    """Each file holds its own text: speech time follows text length, once rate is allowed for."""
    train = entries_of(corpus[0])["train"]
    for lang in ("eng", "deu", "cmn"):
        entries = [e for e in train if e.lang == lang]
        length = [len(normalize_text(e.text, lang).replace(" ", "")) for e in entries]
        seconds = [speech_seconds(e) * e.extra["rate"] for e in entries]
        assert np.corrcoef(length, seconds)[0, 1] > 0.8, lang


def test_texts_are_in_their_script(corpus):
    for entries in entries_of(corpus[0]).values():
        for entry in entries:
            if entry.lang == "cmn":
                assert all("\u4e00" <= c <= "\u9fff" for c in normalize_text(entry.text, "cmn"))
            else:
                assert all(c.isascii() or c.isalpha() for c in entry.text)


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    first = synth.synthesize_corpus(tmp_path / "a", ["cmn", "eng"], 6, seed=11, jobs=2)
    synth.synthesize_corpus(tmp_path / "b", ["cmn", "eng"], 6, seed=11, jobs=1)
    synth.synthesize_corpus(tmp_path / "c", ["cmn", "eng"], 6, seed=12, jobs=2)
    assert first == {"train": 8, "dev": 2, "test": 2}
    for name in ("train.jsonl", "dev.jsonl", "test.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes()
    audio = sorted((tmp_path / "a" / "audio").rglob("*.flac"))
    assert len(audio) == 12
    for path in audio:
        twin = tmp_path / "b" / path.relative_to(tmp_path / "a")
        assert path.read_bytes() == twin.read_bytes()


def test_synth_from_the_cli(tmp_path, cli):
    result = cli(
        "data", "synth", "--langs", "en,zh", "--per-lang", "10", "--out", tmp_path, "--jobs", "2"
    )
    assert result.code == 0, result.stderr
    assert "wrote 20 clips" in result.stdout
    lines = (tmp_path / "train.jsonl").read_text(encoding="utf-8").splitlines()
    assert {json.loads(line)["lang"] for line in lines} == {"eng", "cmn"}
    assert cli("data", "validate", tmp_path / "train.jsonl").code == 0


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--langs", "eng,xx"], "unknown language code 'xx'"),
        (["--langs", "kor"], "no synthetic corpus for kor; available: eng"),
        (["--per-lang", "0"], "Invalid value for '--per-lang'"),
        (["--augment-share", "1.5"], "--augment-share must be between 0 and 1, got 1.5"),
        (["--real-voices", "flite,nobody"], "no voice 'nobody'; voices: festival:kal_diphone"),
    ],
)
def test_synth_bad_options(tmp_path, cli, args, problem):
    result = cli("data", "synth", "--out", tmp_path / "x", *args)
    assert result.code == 2
    assert problem in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_synth_without_espeak(tmp_path, cli, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "espeakng_loader", None)
    monkeypatch.setattr(espeak.ctypes.util, "find_library", lambda name: None)
    espeak.get_espeak.cache_clear()
    try:
        result = cli("data", "synth", "--langs", "eng", "--per-lang", "5", "--out", tmp_path / "x")
    finally:
        espeak.get_espeak.cache_clear()
    assert result.code == 2
    assert result.stderr.strip() == (
        "polyspeech: error: espeak-ng is not installed: pip install espeakng-loader "
        "(or apt-get install espeak-ng)"
    )


def test_synth_language_without_voice(tmp_path, cli, monkeypatch):
    monkeypatch.setitem(synth.VOICES, "eng", "xx-nowhere")
    result = cli("data", "synth", "--langs", "eng", "--per-lang", "5", "--out", tmp_path / "x")
    assert result.code == 2
    assert "espeak-ng has no voice 'xx-nowhere' for language eng" in result.stderr


def test_clean_corpus_is_the_same_speech_without_silence_or_noise(tmp_path, cli):
    synth.synthesize_corpus(tmp_path / "noisy", ["fra", "cmn"], 10, seed=4, jobs=2)
    result = cli(
        "data", "synth", "--langs", "fra,cmn", "--per-lang", "10", "--seed", "4", "--clean",
        "--out", tmp_path / "clean", "--jobs", "2",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    plans = {plan.id: plan for plan in synth.plan_corpus(["fra", "cmn"], 10, seed=4)}
    noisy, clean = entries_of(tmp_path / "noisy"), entries_of(tmp_path / "clean")
    for name in ("train", "dev", "test"):
        assert [(e.id, e.text, e.extra["voice"]) for e in clean[name]] == [
            (e.id, e.text, e.extra["voice"]) for e in noisy[name]
        ]
        for plain, twin in zip(clean[name], noisy[name], strict=True):
            assert plain.extra["snr_db"] is None and twin.extra["snr_db"] > 0
            plan = plans[plain.id]
            assert twin.duration - plain.duration == pytest.approx(plan.lead + plan.tail, abs=2e-3)
            assert np.abs(load_audio(plain.audio)).max() == pytest.approx(plan.peak, abs=1e-3)


def test_real_voices_speak_what_they_can_and_test_voices_only_the_test_split():
    plans = synth.plan_corpus(["eng", "ita", "cmn"], 60, seed=1, real_voices=["flite", "festival"])
    by_lang = {lang: [p for p in plans if p.lang == lang] for lang in ("eng", "ita", "cmn")}
    assert all(p.real_voice is None for p in by_lang["cmn"])  # no real voice speaks Mandarin
    for lang, held in (("eng", "flite:awb"), ("ita", "festival:pc_diphone")):
        trained = {p.real_voice for p in by_lang[lang] if not p.split.startswith("test")}
        tested = {p.real_voice for p in by_lang[lang] if p.split.startswith("test")}
        assert tested == {held} and held not in trained
        assert all(v.split(":")[0] in ("flite", "festival") for v in trained)
    assert len({p.real_voice for p in by_lang["eng"]}) == 7  # 4 flite and 3 festival voices
    plain = synth.plan_corpus(["eng"], 20, seed=1)  # without the options: espeak-ng, unchanged
    assert all(p.real_voice is None and p.augment_seed is None for p in plain)


def test_augmented_clips_record_their_chain_and_keep_their_duration(tmp_path):
    counts = synth.synthesize_corpus(tmp_path, ["spa"], 10, seed=5, jobs=2, augment_share=1.0)
    assert sum(counts.values()) == 10
    assert (tmp_path / synth.AUGMENT_SOURCES).is_file()
    chains = []
    for entries in entries_of(tmp_path).values():
        for entry in entries:
            chains.append(entry.extra["augment"])
            assert abs(soundfile.info(entry.audio).frames / 16000 - entry.duration) < 1e-3
    assert all("level_db" in chain for chain in chains)
    assert len({json.dumps(chain, sort_keys=True) for chain in chains}) == 10


@pytest.mark.skipif(not voices.installed("flite:slt"), reason="flite is not installed")
def test_a_real_voice_speaks_a_clip(tmp_path):
    synth.synthesize_corpus(tmp_path, ["eng"], 10, seed=2, jobs=2, real_voices=["flite:slt"])
    entries = [e for es in entries_of(tmp_path).values() for e in es]
    assert {e.extra["voice"] for e in entries if e.id.split("-")[1] != "test"} == {"flite:slt"}
    assert all(e.extra["voice"] not in voices.REGISTRY for e in entries if "-test-" in e.id)
