"""One recognition interface for both families (polyspeech.options): keyword-only options in
whisper's names, the spellings of before still working with a warning, tensors as audio, and the
generator form. A stand-in family records what it is asked; the builtin models show the real path.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import polyspeech
from polyspeech.errors import InputError
from polyspeech.options import Recognizer, TranscribeOptions, VadOptions
from polyspeech.results import Result, Segment, Word

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


class Recording(Recognizer):
    """A family that answers each clip with one segment spanning it, and keeps what it got."""

    LEGACY_ORDER = ("lang", "batch_size", "vad", "lm")

    def __init__(self) -> None:
        self.calls: list[tuple[list[np.ndarray], list, TranscribeOptions]] = []

    def _recognise(self, clips, languages, options):
        self.calls.append((clips, languages, options))
        results = []
        for clip, language in zip(clips, languages, strict=True):
            seconds = len(clip) / 16000
            word = Word("la", 0.1, seconds - 0.1, 0.9)
            segment = Segment(0.0, seconds, "la", [word], None, language)
            results.append(Result("la", language, [segment], seconds))
        return results


def options_of(model: Recording) -> TranscribeOptions:
    return model.calls[-1][2]


def test_keywords_in_whispers_names_reach_the_family():
    model = Recording()
    vad = VadOptions(threshold=0.3)
    model.transcribe(
        np.zeros(16000, np.float32), language="fra", word_timestamps=True, beam_size=3,
        vad_filter=False, vad_parameters=vad, batch_size=2, lm="none",
    )  # fmt: skip
    assert model.calls[-1][1] == ["fra"]
    assert options_of(model) == TranscribeOptions(
        language="fra", word_timestamps=True, beam_size=3, vad_filter=False,
        vad_parameters=vad, batch_size=2, lm="none",
    )  # fmt: skip
    model.transcribe(np.zeros(1600, np.float32), options=TranscribeOptions(beam_size=5), lm="x")
    assert (options_of(model).beam_size, options_of(model).lm) == (5, "x")
    model.transcribe(np.zeros(1600, np.float32), vad_parameters={"threshold": 0.7})
    assert options_of(model).vad_parameters == VadOptions(0.7)


@pytest.mark.parametrize(
    ("call", "warning", "expected"),
    [
        (lambda m, a: m.transcribe(a, "deu", 2), "options by position", {"language": "deu"}),
        (lambda m, a: m.transcribe(a, lang="deu"), "lang= is deprecated", {"language": "deu"}),
        (lambda m, a: m.transcribe(a, vad=False), "vad= is deprecated", {"vad_filter": False}),
        (
            lambda m, a: m.transcribe(a, vad_threshold=0.2),
            "vad_threshold= is deprecated",
            {"vad_parameters": VadOptions(0.2)},
        ),
        (
            lambda m, a: m.transcribe(a, task="asr"),
            "task='asr' is deprecated, use task='transcribe'",
            {"task": "transcribe"},
        ),
        (
            lambda m, a: m.transcribe_many([a], ["deu"]),
            "options by position",
            {"language": None},
        ),
    ],
)
def test_the_spellings_of_before_work_with_a_warning_naming_the_new(call, warning, expected):
    model = Recording()
    with pytest.warns(DeprecationWarning, match=f"^polyspeech: .*{warning}"):
        call(model, np.zeros(1600, np.float32))
    for name, value in expected.items():
        assert getattr(options_of(model), name) == value
    if "language" in expected and expected["language"] == "deu":
        assert model.calls[-1][1] == ["deu"]


@pytest.mark.parametrize(
    ("keywords", "error", "message"),
    [
        ({"task": "summarise"}, InputError, "unknown task 'summarise'; use transcribe, translate"),
        ({"beam_size": 0}, InputError, "beam_size must be a whole number of at least 1, got 0"),
        ({"batch_size": 2.5}, InputError, "batch_size must be a whole number"),
        ({"vad_parameters": {"threshold": 1.5}}, InputError, "vad threshold must be between"),
        ({"temperature": 0.2}, TypeError, "unexpected keyword argument 'temperature'"),
        ({"lang": "fra", "language": "fra"}, TypeError, "got 'language' twice"),
    ],
)
def test_options_it_cannot_follow_are_named(keywords, error, message):
    with pytest.raises(error, match=message):
        Recording().transcribe(np.zeros(1600, np.float32), **keywords)


def test_options_by_position_beyond_the_old_ones_are_a_type_error():
    with pytest.raises(TypeError, match="at most 4 options by position"):
        Recording().transcribe(np.zeros(1600, np.float32), "fra", 2, True, None, 16000)


def test_transcribe_many_takes_one_language_or_one_per_input():
    model = Recording()
    clips = [np.zeros(1600, np.float32), np.zeros(3200, np.float32)]
    assert [r.duration for r in model.transcribe_many(clips, language="deu")] == [0.1, 0.2]
    assert model.calls[-1][1] == ["deu", "deu"]
    model.transcribe_many(clips, language=["deu", None])
    assert model.calls[-1][1] == ["deu", None]
    with pytest.raises(InputError, match="1 languages for 2 inputs"):
        model.transcribe_many(clips, language=["deu"])


def test_a_tensor_is_audio_at_its_sample_rate():
    model = Recording()
    samples = np.sin(np.arange(8000) / 5).astype(np.float32)
    model.transcribe(torch.from_numpy(samples), sample_rate=8000)
    clip = model.calls[-1][0][0]
    assert clip.dtype == np.float32 and len(clip) == 16000  # resampled to 16 kHz
    model.transcribe(samples, sample_rate=8000)
    np.testing.assert_array_equal(model.calls[-1][0][0], clip)


def test_a_family_refuses_a_task_it_does_not_do():
    ctc = polyspeech.load("builtin:ctc")
    with pytest.raises(InputError, match="builtin:ctc: task translate is not one this model does"):
        ctc.transcribe(np.zeros(16000, np.float32), language="eng", task="translate")
    with pytest.raises(InputError, match="task translate is not one"):
        polyspeech.translate(np.zeros(16000, np.float32), ctc)


def test_segments_come_one_group_at_a_time_and_info_fills_in():
    from polyspeech.audio import load_audio

    model = Recording()
    samples = load_audio(EXAMPLES / "eng.flac")
    silence = np.zeros(16000 * 2, np.float32)
    audio = np.concatenate([samples, silence, samples, silence, samples])
    segments, info = model.segments(audio, language="eng", batch_size=1)
    assert model.calls == []  # nothing recognised before it is asked for
    first = next(segments)
    assert len(model.calls) == 1 and info.text == ""
    rest = list(segments)
    assert len(model.calls) == 1 + len(rest) >= 3  # one region a call (VAD's, batch_size 1)
    starts = [first.start, *(segment.start for segment in rest)]
    assert starts == sorted(starts) and starts[-1] > 2 * len(samples) / 16000
    assert first.words[0].start == pytest.approx(first.start + 0.1)
    assert info.segments == [first, *rest] and info.text == " ".join(["la"] * (1 + len(rest)))
    assert info.language == "eng"


@pytest.mark.parametrize("lang", ["fra", "cmn"])  # cmn: segments joined without a space
def test_builtin_ctc_segments_give_the_words_transcribe_gives(lang):
    from polyspeech.audio import load_audio

    model = polyspeech.load("builtin:ctc")
    samples = load_audio(EXAMPLES / f"{lang}.flac")
    audio = np.concatenate([samples, np.zeros(16000, np.float32), samples])
    whole = model.transcribe(audio, language=lang, lm="none")
    segments, info = model.segments(audio, language=lang, lm="none", batch_size=1)
    found = list(segments)
    assert len(found) == len(whole.segments) == 2
    assert [s.text for s in found] == [s.text for s in whole.segments]
    for mine, theirs in zip(found, whole.segments, strict=True):
        assert abs(mine.start - theirs.start) < 0.05 and abs(mine.end - theirs.end) < 0.05
    assert info.text == whole.text and info.language == lang


def test_the_command_line_json_is_the_librarys_to_dict(cli, tmp_path):
    result = cli("transcribe", EXAMPLES / "deu.flac", "--lang", "deu", "--output-format", "json")
    assert result.code == 0, result.stderr
    printed = json.loads(result.stdout)
    library = polyspeech.transcribe(EXAMPLES / "deu.flac", language="deu").to_dict()
    assert printed["text"] == library["text"]
    assert printed.keys() == library.keys()
    assert printed["segments"][0].keys() == library["segments"][0].keys()
