"""The embedded default model (builtin:ctc, trained by recipes/default_ctc) on the committed
examples: held-out test clips, one per language, in voices the model never heard."""

import itertools
import json
from pathlib import Path

import pytest

import polyspeech
from polyspeech.eval.metrics import cer
from polyspeech.text.normalize import normalize_text

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MAIN_LANGS = "cmn deu eng fra ind ita nld por rus spa swh tur".split()
ROWS = [json.loads(line) for line in (EXAMPLES / "examples.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def default_model():
    return polyspeech.load()


def test_builtin_model_offers_the_twelve_main_languages(cli):
    result = cli("languages")
    assert result.code == 0, result.stderr
    assert result.stdout.split() == MAIN_LANGS


def test_the_examples_come_back_close_to_their_transcripts(cli):
    result = cli("transcribe", "--manifest", EXAMPLES / "examples.jsonl")
    assert result.code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["id"] for line in lines] == [row["id"] for row in ROWS]
    refs = [normalize_text(row["text"], row["lang"]) for row in ROWS]
    hyps = [normalize_text(line["text"], line["language"]) for line in lines]
    # measured 0.194 (21 substitutions, 22 deletions, 1 insertion in 227 characters);
    # a broken model scores near 1.0
    assert cer(refs, hyps).rate < 0.3, hyps


def test_the_library_call_gives_timed_words_inside_the_clip(default_model):
    row = next(row for row in ROWS if row["lang"] == "deu")
    result = default_model.transcribe(EXAMPLES / row["audio"], lang="deu")
    assert result.language == "deu"
    words = [word for segment in result.segments for word in segment.words]
    assert " ".join(word.text for word in words) == result.text
    reference = normalize_text(row["text"], "deu").split()
    assert len(words) == len(reference)  # measured: every word but one spelt right
    assert all(0 <= w.start < w.end <= row["duration"] for w in words)
    assert all(a.end <= b.start for a, b in itertools.pairwise(words))


def test_no_flags_transcribes_a_file(cli):
    result = cli("transcribe", EXAMPLES / "spa.flac")
    assert result.code == 0, result.stderr
    assert result.stdout.strip()  # one file: its text alone (the language is guessed)
