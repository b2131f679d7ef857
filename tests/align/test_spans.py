import numpy as np
import pytest

from polyspeech.align.spans import align_transcript
from polyspeech.align.transcript import romanized_line
from polyspeech.errors import InputError
from polyspeech.text.vocab import Vocabulary

VOCAB = Vocabulary.from_texts(["abcdefghijklmnopqrstuvwxyz'"])
SHIFT = 0.02  # 320 samples a frame


class ScriptedModel:
    """A CTC model whose output is written in advance: ``script`` maps frames to (char, prob);
    every other frame is blank with probability 0.9."""

    frame_shift = SHIFT

    def __init__(self, script: dict[int, tuple[str, float]], languages=()) -> None:
        self.script = script
        self.languages = list(languages)
        self.asked: set = set()

    def vocabulary(self, lang):
        self.asked.add(lang)
        return VOCAB

    def log_probs(self, batch, lang):
        index = VOCAB.mapping()
        out = []
        for clip in batch:
            frames = round(len(clip) / 320)
            probs = np.full((frames, len(VOCAB)), 0.1 / (len(VOCAB) - 1), np.float32)
            probs[:, 0] = 0.9
            for frame, (char, p) in self.script.items():
                if frame < frames:
                    probs[frame] = (1 - p) / (len(VOCAB) - 1)
                    probs[frame, index[char]] = p
            out.append(np.log(probs))
        self.asked.update(lang if isinstance(lang, list) else [lang])  # one per clip, or all
        return out


def spoken(start: int, text: str, p: float = 0.9) -> dict[int, tuple[str, float]]:
    """Characters on every other frame from ``start`` (spaces are a gap of two frames)."""
    return {start + 2 * i: (c, p) for i, c in enumerate(text) if c != " "}


SAMPLES = np.zeros(200 * 320, np.float32)  # 4 s: 200 frames


def test_word_character_and_line_spans_fall_on_the_tokens_frames():
    model = ScriptedModel({**spoken(100, "hi"), **spoken(150, "yo")})
    words = align_transcript(model, SAMPLES, ["Hi,", "yo!"]).spans
    assert [(s.text, s.start, s.end) for s in words] == [
        ("Hi,", 2.0, 2.06),
        ("yo!", 3.0, 3.06),
    ]
    assert all(0.85 < s.score <= 0.9 for s in words)
    chars = align_transcript(model, SAMPLES, ["Hi,", "yo!"], granularity="char").spans
    assert [(s.text, s.start, s.end) for s in chars] == [
        ("H", 2.0, 2.02),
        ("i,", 2.04, 2.06),
        ("y", 3.0, 3.02),
        ("o!", 3.04, 3.06),
    ]
    lines = align_transcript(model, SAMPLES, ["Hi,", "yo!"], granularity="line").spans
    assert [(s.text, s.start, s.end) for s in lines] == [("Hi,", 2.0, 2.06), ("yo!", 3.0, 3.06)]


def test_star_takes_speech_the_transcript_does_not_cover():
    # an intro says "hi" more clearly than the transcribed line does
    model = ScriptedModel({**spoken(20, "hi", 0.97), **spoken(100, "hi yo")})
    plain = align_transcript(model, SAMPLES, ["hi yo"]).spans
    assert plain[0].start == 0.4  # without the star, the intro takes the first word
    starred = align_transcript(model, SAMPLES, ["hi yo"], star=True).spans
    assert [(s.text, s.start, s.end) for s in starred] == [("hi", 2.0, 2.06), ("yo", 2.12, 2.18)]


def test_a_word_without_tokens_gets_an_empty_span_and_is_reported():
    model = ScriptedModel({**spoken(100, "hi"), **spoken(150, "yo")})
    result = align_transcript(model, SAMPLES, ["hi 42 yo"])
    assert [(s.text, s.start, s.end, s.score) for s in result.spans][1] == ("42", 2.06, 2.06, 0.0)
    assert result.unmapped == {"4": 1, "2": 1}


def test_bad_requests():
    model = ScriptedModel({})
    with pytest.raises(InputError, match=r"83 tokens need at least 97 frames, the audio has 5"):
        align_transcript(model, SAMPLES[:1600], ["hello " * 14])
    with pytest.raises(InputError, match="no character of the transcript"):
        align_transcript(model, SAMPLES, ["42"])
    with pytest.raises(InputError, match="unknown granularity 'page'"):
        align_transcript(model, SAMPLES, ["hi"], granularity="page")


def test_a_universal_model_aligns_any_language_with_its_one_adapter():
    model = ScriptedModel({**spoken(100, "privet")}, languages=["und"])
    spans = align_transcript(model, SAMPLES, ["Привет!"], lang="rus").spans
    assert [(s.text, s.start, s.end) for s in spans] == [("Привет!", 2.0, 2.22)]
    assert model.asked == {"und"}


def test_romanized_line_is_what_the_universal_model_is_asked():
    assert romanized_line("Привет, мир!", "rus") == "privet mir"
    assert romanized_line("你好\uff0c世界", "cmn") == "ni hao shi jie"
    assert romanized_line("Ça va, 42?", "fra") == "sa va"


def loud(*ranges: tuple[int, int]) -> np.ndarray:
    """SAMPLES with noise 40 dB above a faint floor over the given frame ranges."""
    rng = np.random.default_rng(0)
    samples = rng.normal(0, 0.001, len(SAMPLES)).astype(np.float32)
    for start, end in ranges:
        samples[start * 320 : end * 320] = rng.normal(0, 0.1, (end - start) * 320)
    return samples


def test_word_edges_move_out_over_voiced_frames_and_in_over_silence():
    # "hi" voiced over frames 95-110: its letters hold 100-103, so both edges move out (at most
    # 60 ms, 3 frames); "yo"'s last letter held on over frames 152-190, voiced only to 156
    script = {**spoken(100, "hi"), 150: ("y", 0.9), **{f: ("o", 0.9) for f in range(152, 190)}}
    words = align_transcript(ScriptedModel(script), loud((95, 110), (149, 156)), ["hi yo"]).spans
    assert [(s.text, s.start, s.end) for s in words] == [("hi", 1.94, 2.12), ("yo", 2.98, 3.12)]
    lines = align_transcript(
        ScriptedModel(script), loud((95, 110), (149, 156)), ["hi yo"], granularity="line"
    )
    assert [(s.start, s.end) for s in lines.spans] == [(1.94, 3.12)]


def test_fitted_edges_stop_half_way_to_the_next_word_and_keep_a_frame():
    from polyspeech.align.spans import fit_edges

    voiced = np.ones(40, bool)
    assert fit_edges([(10, 12), (14, 16)], voiced, reach=3) == [(7, 13), (13, 19)]
    voiced[20:30] = False  # a word wholly in silence keeps its first frame
    assert fit_edges([(22, 25)], voiced, reach=3) == [(22, 23)]


def test_each_window_heard_is_counted_for_a_progress_bar():
    from polyspeech.ctc.transcribe import window_count

    samples = np.zeros(70 * 16000, np.float32)  # 30 s windows: three
    heard = []
    model = ScriptedModel(spoken(100, "hi"))
    align_transcript(model, samples, ["hi"], on_window=lambda: heard.append(1))
    assert len(heard) == window_count(samples) == 3
