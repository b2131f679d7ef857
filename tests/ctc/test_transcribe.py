import subprocess
import sys
from types import SimpleNamespace

import numpy as np

from polyspeech.audio import load_audio
from polyspeech.audio.vad import SPEECH_PAD_MS, level_gain, pieces, silero, speech_regions
from polyspeech.ctc.transcribe import identify_pieces, lead_in, transcribe_many
from polyspeech.data.manifest import read_manifest
from polyspeech.text.vocab import Vocabulary
from tests.conftest import sine


class LoudnessModel:
    """A stand-in CTC model with 40 ms frames: it emits "a" where the audio is loud and "|"
    where it is quiet, so the true word times are known exactly."""

    frame_shift = 0.04

    @property
    def languages(self):
        return ["eng"]

    def __init__(self):
        self.vocab = Vocabulary.from_texts(["a"])
        self.calls = []

    def vocabulary(self, lang):
        return self.vocab

    def resolve_language(self, lang):
        return "eng"

    def log_probs(self, clips, lang):
        self.calls.append([len(c) for c in clips])
        out = []
        for clip in clips:
            frames = clip[: len(clip) // 640 * 640].reshape(-1, 640)
            loud = np.abs(frames).max(axis=1) > 0.1
            probs = np.full((len(frames), len(self.vocab)), 1e-4)
            probs[loud, self.vocab.mapping()["a"]] = 1.0
            probs[~loud, self.vocab.mapping()["|"]] = 1.0
            out.append(np.log(probs / probs.sum(axis=1, keepdims=True)))
        return out


def test_words_keep_their_times_across_windows():
    rate = 16000
    audio = np.zeros(75 * rate, np.float32)
    bursts = [(1.0, 1.52), (29.2, 30.8), (44.0, 44.4), (60.04, 61.0)]
    for start, end in bursts:
        audio[round(start * rate) : round(end * rate)] = sine(440, end - start, rate)
    model = LoudnessModel()
    result = transcribe_many(model, [audio], ["eng"], batch_size=2, vad=False)[0]
    times = [(w.start, w.end) for s in result.segments for w in s.words]
    # the burst across the 30 s window edge comes back as two words that meet at the edge
    expected = [(1.0, 1.52), (29.2, 30.0), (30.0, 30.8), (44.0, 44.4), (60.04, 61.0)]
    assert len(times) == len(expected)
    for (start, end), (true_start, true_end) in zip(times, expected, strict=True):
        assert abs(start - true_start) <= 0.04 and abs(end - true_end) <= 0.04
    assert [len(call) for call in model.calls] == [2, 1]  # three 30 s windows, batches of two
    assert max(max(call) for call in model.calls) <= (30 + 2 * 2) * rate  # window + context


def test_a_clip_that_starts_on_speech_gets_noise_at_the_level_of_its_quietest_20_ms():
    rate = 16000
    square = np.where(np.arange(rate // 2) % 2, 0.05, -0.05).astype(np.float32)  # RMS 0.05
    clip = np.concatenate([sine(440, 1.0, rate), square])
    lead = lead_in(clip, 4800)
    assert len(lead) == 4800 and abs(np.sqrt(np.mean(lead**2)) - 0.05) < 0.003
    assert np.array_equal(lead_in(clip, 4800), lead)  # the same draw every time
    silent = np.concatenate([clip, np.zeros(rate // 10, np.float32)])
    assert len(lead_in(silent, 4800)) == 4800 and not lead_in(silent, 4800).any()
    # a clip that starts in its background (within 10 dB of its quietest) gets none
    assert len(lead_in(np.concatenate([square, sine(440, 1.0, rate)]), 4800)) == 0
    assert len(lead_in(np.zeros(rate, np.float32), 4800)) == 0


def test_speech_from_the_first_sample_keeps_its_times_after_the_lead_in():
    rate = 16000
    noise = (0.01 * np.random.default_rng(1).standard_normal(4 * rate)).astype(np.float32)
    for bursts, heard in [([(0.0, 0.52), (2.0, 2.52)], 0.32), ([(1.0, 1.52)], 0.0)]:
        audio = noise.copy()
        for start, end in bursts:
            audio[round(start * rate) : round(end * rate)] += sine(440, end - start, rate)
        model = LoudnessModel()
        result = transcribe_many(model, [audio], ["eng"], vad=False)[0]
        times = [(w.start, w.end) for s in result.segments for w in s.words]
        assert len(times) == len(bursts)
        for (start, end), true in zip(times, bursts, strict=True):
            assert abs(start - true[0]) <= 0.04 and abs(end - true[1]) <= 0.04
        # speech at the first sample: the model heard 0.32 s (eight 40 ms frames) before it
        assert model.calls == [[len(audio) + round(heard * rate)]]


def test_vad_finds_each_utterance_and_never_bridges_a_pause(tiny_corpus):
    entries = list(read_manifest(tiny_corpus / "train.jsonl"))[:5]
    gap = np.zeros(24000, np.float32)  # 1.5 s: regions padded 0.4 s either side stay apart
    spans, parts, position = [], [], 0
    for entry in entries:
        clip = load_audio(entry.audio)
        spans.append((position, position + len(clip)))
        parts += [clip, gap]
        position += len(clip) + len(gap)
    found = pieces([np.concatenate(parts)], 30.0, vad=True)[0]
    slack = SPEECH_PAD_MS * 16  # the padding, in samples
    for start, end in found:  # each piece inside one utterance
        assert any(s - slack <= start and end <= e + slack for s, e in spans), (start, end)
    for s, e in spans:  # each utterance heard
        assert any(start < e and end > s for start, end in found), (s, e)
    assert all(end - start <= 30 * 16000 for start, end in found)


def test_files_detected_together_get_silero_vads_own_regions(tiny_corpus):
    """Batched detection against silero-vad's own get_speech_timestamps, file by file, each
    file at its level_gain: files of several lengths (and so several groups), one of them
    empty."""
    import torch

    clips = [load_audio(e.audio) for e in list(read_manifest(tiny_corpus / "train.jsonl"))[:6]]
    files = [clips[0], np.concatenate(clips[1:4]), np.zeros(0, np.float32), *clips[4:], clips[1]]
    reference = silero().load_silero_vad()
    expected = [
        [
            (s["start"], s["end"])
            for s in silero().get_speech_timestamps(
                torch.from_numpy(f * level_gain(f)),
                reference,
                max_speech_duration_s=4.0,
                speech_pad_ms=SPEECH_PAD_MS,
            )
        ]
        if len(f)
        else []
        for f in files
    ]
    assert speech_regions(files, 4.0) == expected
    assert sum(map(len, expected)) > len(files)  # the 4 s limit cut the long file


def test_vad_leaves_torchs_thread_count_alone():
    """silero-vad's import sets torch to one thread for the whole process; detection must not
    (a fresh process, where silero-vad is not yet imported)."""
    code = (
        "import numpy as np, torch; torch.set_num_threads(3); "
        "from polyspeech.audio.vad import speech_regions; "
        "speech_regions([np.zeros(16000, np.float32)]); print(torch.get_num_threads())"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.split()[-1] == "3"


class PitchModel(LoudnessModel):
    """Two languages, one per clip: "eng" spells loud frames "a", "spa" spells them "b"."""

    folder = "pitch-ctc"

    @property
    def languages(self):
        return ["eng", "spa"]

    def __init__(self):
        super().__init__()
        self.vocab = Vocabulary.from_texts(["ab"])

    def resolve_language(self, lang):
        return lang

    def log_probs(self, clips, langs):
        self.calls.append(langs)
        out = []
        for clip, lang in zip(clips, langs, strict=True):
            frames = clip[: len(clip) // 640 * 640].reshape(-1, 640)
            loud = np.abs(frames).max(axis=1) > 0.1
            probs = np.full((len(frames), len(self.vocab)), 1e-4)
            probs[loud, self.vocab.mapping()["a" if lang == "eng" else "b"]] = 1.0
            probs[~loud, self.vocab.mapping()["|"]] = 1.0
            out.append(np.log(probs / probs.sum(axis=1, keepdims=True)))
        return out


class PitchIdentifier:
    """A stand-in LID model: a 440 Hz piece is English (0.9), a higher one Spanish (0.6), and
    it knows a language the recogniser lacks, whose share is left out."""

    folder = "pitch-lid"

    def __init__(self, labels=("fin", "eng", "spa")):
        self.labels = list(labels)

    def probabilities(self, clips):
        rows = []
        for clip in clips:
            spectrum = np.abs(np.fft.rfft(clip))
            low = np.fft.rfftfreq(len(clip), 1 / 16000)[spectrum.argmax()] < 600
            share = {"fin": 0.5, "eng": 0.45 if low else 0.2, "spa": 0.05 if low else 0.3}
            rows.append([share.get(label, 0.0) for label in self.labels])
        return np.array(rows)


def test_auto_routes_each_piece_to_the_language_identified():
    import pytest

    from polyspeech.errors import InputError

    rate = 16000
    audio = np.zeros(int(90.5 * rate), np.float32)
    pitches = {(1.0, 2.0): 440, (31.0, 33.0): 880, (61.0, 62.0): 440, (90.0, 90.4): 880}
    for (start, end), frequency in pitches.items():
        audio[round(start * rate) : round(end * rate)] = sine(frequency, end - start, rate)
    model = PitchModel()
    result = transcribe_many(model, [audio], ["auto"], vad=False, identifier=PitchIdentifier())[0]
    found = [(s.text, s.language, s.language_probability) for s in result.segments]
    # the last window is 0.5 s, too short to tell: it takes the file's language, English
    # (0.9 in 60 s, 0.4 in 30.5 s: 0.7315), and spells its high tone "a"
    assert found == [("a", "eng", 0.9), ("b", "spa", 0.6), ("a", "eng", 0.9), ("a", "eng", 0.7315)]
    assert result.language == "eng" and result.language_probability == 0.7315
    assert result.text == "a b a a"
    assert model.calls == [["eng", "spa", "eng", "eng"]]  # one batch, each piece in its language
    with pytest.raises(InputError, match="pitch-lid: this language-ID model knows none of"):
        transcribe_many(
            model, [audio], ["auto"], vad=False, identifier=PitchIdentifier(["fin", "deu"])
        )[0]
    named = transcribe_many(model, [audio], ["spa"], vad=False)[0]
    assert named.text == "b b b b" and {s.language for s in named.segments} == {"spa"}
    assert named.language_probability is None


def test_files_transcribed_together_come_back_as_each_alone():
    rate = 16000
    files = []
    for bursts in ([(1.0, 2.0), (40.0, 41.0)], [(5.0, 6.5)], []):
        audio = np.zeros(45 * rate, np.float32)
        for start, end in bursts:
            audio[round(start * rate) : round(end * rate)] = sine(440, end - start, rate)
        files.append(audio)
    model = PitchModel()
    langs = ["eng", "spa", "eng"]
    together = transcribe_many(model, files, langs, batch_size=8, vad=False)
    # one batch of the six windows, each in its file's language, the 30 s ones first
    assert model.calls == [["eng", "spa", "eng", "eng", "spa", "eng"]]
    alone = [
        transcribe_many(model, [audio], [lang], vad=False)[0]
        for audio, lang in zip(files, langs, strict=True)
    ]
    assert together == alone
    assert [r.text for r in together] == ["a a", "b", ""]


def test_the_vad_threshold_reaches_the_vad_and_is_checked(conformer_folder, monkeypatch):
    import pytest

    import polyspeech.ctc.transcribe as transcribe
    from polyspeech.ctc.model import CtcModel
    from polyspeech.errors import InputError
    from polyspeech.options import VadOptions

    heard, real = [], transcribe.pieces

    def spy(files, max_seconds, vad, threshold=0.5):
        heard.append(threshold)
        return real(files, max_seconds, vad, threshold=threshold)

    monkeypatch.setattr(transcribe, "pieces", spy)
    clip = sine(440, 1.0, 16000)
    transcribe_many(LoudnessModel(), [clip], ["eng"], vad_threshold=0.3)
    CtcModel(conformer_folder[0]).transcribe(
        clip, language="eng", lm="none", vad_parameters=VadOptions(threshold=0.7)
    )
    assert heard == [0.3, 0.7]
    for threshold in (0.0, 1.0):
        with pytest.raises(InputError, match="vad threshold must be between 0 and 1"):
            transcribe_many(LoudnessModel(), [clip], ["eng"], vad_threshold=threshold)


def test_language_id_labels_find_a_models_script_keys():
    # MMS-LID says cmn; mms-1b-all's key is cmn-script_simplified, and srp has two scripts
    model = SimpleNamespace(
        languages=["cmn-script_simplified", "eng", "srp-script_cyrillic", "srp-script_latin"],
        folder="mms",
    )
    rows = np.array([[0.7, 0.2, 0.1], [0.1, 0.2, 0.7]], np.float32)
    identifier = SimpleNamespace(
        labels=["cmn", "srp", "eng"], folder="lid", probabilities=lambda clips: rows.copy()
    )
    samples = np.zeros(32000, np.float32)
    chosen, overall = identify_pieces(model, identifier, samples, [(0, 16000), (16000, 32000)])
    assert [lang for lang, _ in chosen] == ["cmn-script_simplified", "eng"]
    assert set(overall) == {"cmn-script_simplified", "eng"}
