"""`polyspeech transcribe/translate` with a speech LLM folder."""

import itertools
import json

import numpy as np
import pytest
import soundfile
import soxr

from polyspeech.speechllm.folder import load_speechllm
from polyspeech.tts.espeak import get_espeak


@pytest.fixture(scope="module")
def speech_file(tmp_path_factory):
    """Two sentences with a second of silence between them: two VAD pieces."""
    engine = get_espeak()
    pieces = []
    for text in ("Good morning, how are you today?", "The market opens at nine."):
        audio = engine.synthesize(text, "en-us")
        pieces += [soxr.resample(audio, engine.sample_rate, 16000), np.zeros(16000, np.float32)]
    path = tmp_path_factory.mktemp("audio") / "two.wav"
    soundfile.write(path, np.concatenate(pieces), 16000)
    return path


def test_transcription_and_translation_together_come_back_per_segment(
    cli, mooer_folder, speech_file
):
    result = cli(
        "transcribe", speech_file, "--model", mooer_folder, "--task", "transcribe+translate",
        "--output-format", "json", "--dtype", "float32",  # as the library call below
    )  # fmt: skip
    assert result.code == 0, result.stderr
    data = json.loads(result.stdout)
    segments = data["segments"]
    assert len(segments) >= 2  # a piece per sentence at least
    assert all(a["end"] <= b["start"] for a, b in itertools.pairwise(segments))
    model = load_speechllm(mooer_folder)
    expected = model.transcribe(speech_file, task="transcribe+translate")
    assert data["text"] == expected.text and data["translation"] == expected.translation
    assert [s["translation"] for s in data["segments"]] == [
        s.translation for s in expected.segments
    ]


def test_translate_prints_the_translation(cli, mooer_folder, speech_file):
    result = cli("translate", speech_file, "--model", mooer_folder)
    assert result.code == 0, result.stderr
    expected = load_speechllm(mooer_folder).transcribe(speech_file, language="en", task="translate")
    assert result.stdout.strip() == expected.text.strip()
    assert expected.language == "eng"  # the language asked for the speech


def test_options_a_family_does_not_have_are_refused(cli, mooer_folder, speech_file, tmp_path):
    result = cli("transcribe", speech_file, "--model", mooer_folder, "--lm", tmp_path)
    assert result.code == 2 and "--lm is for CTC models" in result.stderr
    result = cli("transcribe", speech_file, "--task", "translate")
    assert result.code == 2
    assert "task translate is not one this model does (transcribe)" in result.stderr
    result = cli("transcribe", speech_file, "--model", mooer_folder, "--task", "summary")
    assert result.code == 2 and "unknown task 'summary'" in result.stderr


def test_word_times_come_from_the_aligner_inside_each_segment(mooer_folder, speech_file):
    model = load_speechllm(mooer_folder)
    said = iter(["good morning how are you today", "the market opens at nine"] * 3)
    model.answer = lambda clips, task: [(next(said), None) for _ in clips]
    result = model.transcribe(speech_file, language="eng", word_timestamps=True)
    for segment in result.segments:
        assert [w.word for w in segment.words] == segment.text.split()
        assert all(segment.start <= w.start < w.end <= segment.end for w in segment.words)


def test_evaluate_scores_a_speech_llm_and_skips_its_missing_languages(
    cli, mooer_folder, speech_file
):
    manifest = speech_file.parent / "m.jsonl"
    lines = [
        {
            "audio": speech_file.name,
            "text": "Good morning, how are you today? The market opens at nine.",
            "lang": "eng",
            "duration": 4.4,
        },
        {"audio": speech_file.name, "text": "Bom dia.", "lang": "por", "duration": 4.4},
    ]
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = cli(
        "evaluate", manifest, "--model", mooer_folder, "--json", speech_file.parent / "r.json"
    )
    assert result.code == 0, result.stderr
    report = json.loads((speech_file.parent / "r.json").read_text())
    assert list(report["per_lang"]) == ["eng"] and report["skipped"] == {"por": 1}
    assert report["per_lang"]["eng"]["cer"] > 0.5  # a random LLM does not transcribe


def test_evaluate_scores_translations_with_bleu_and_chrf(cli, mooer_folder, speech_file):
    manifest = speech_file.parent / "ast.jsonl"
    lines = [
        {"audio": speech_file.name, "text": "早上好", "lang": "cmn", "duration": 4.4,
         "translation": "Good morning, how are you today? The market opens at nine."},
        {"audio": speech_file.name, "text": "Good morning.", "lang": "eng", "duration": 4.4},
    ]  # fmt: skip
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = speech_file.parent / "ast.json"
    result = cli(
        "evaluate", manifest, "--model", mooer_folder, "--task", "translate", "--output", out
    )
    assert result.code == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["task"] == "ast" and report["skipped"] == {"eng": 1}
    row = report["per_lang"]["cmn"]
    assert row["n"] == 1 and 0 <= row["bleu"] < 10 and 0 <= row["chrf"] < 40  # random LLM
    assert report["macro_bleu"] == row["bleu"] and "| cmn | 1 |" in result.stdout


def test_evaluate_translation_mistakes_are_one_line_errors(
    cli, mooer_folder, speech_file, conformer_folder
):
    manifest = speech_file.parent / "plain.jsonl"
    line = {"audio": speech_file.name, "text": "早上好", "lang": "cmn", "duration": 4.4}
    manifest.write_text(json.dumps(line) + "\n")
    none = cli("evaluate", manifest, "--model", mooer_folder, "--task", "translate")
    assert none.code == 2 and "no line with a translation" in none.stderr
    ctc = cli("evaluate", manifest, "--model", conformer_folder[0], "--task", "ast")
    assert ctc.code == 2 and "a CTC model only transcribes" in ctc.stderr
    unknown = cli("evaluate", manifest, "--model", mooer_folder, "--task", "tts")
    assert unknown.code == 2 and "unknown task 'tts'" in unknown.stderr
