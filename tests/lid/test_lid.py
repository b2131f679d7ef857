"""Language identification: MMS-LID folders, our conformer LID, training, `polyspeech identify`."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from polyspeech.data.manifest import load_entry_audio, read_manifest, write_manifest
from polyspeech.errors import InputError
from polyspeech.hub import resolve_model
from polyspeech.lid.model import LidModel, fit_temperature
from polyspeech.lid.train import LidTrainConfig, train_lid
from tests.conftest import sine

LABELS = {0: "eng", 1: "de", 2: "fra"}  # MMS-LID's labels are ISO 639-3; "de" tests mapping


def make_mms_lid_folder(path):
    """A tiny Wav2Vec2ForSequenceClassification in the layout facebook/mms-lid-* is in."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor
    from transformers import Wav2Vec2ForSequenceClassification as Classifier

    config = Wav2Vec2Config(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        conv_dim=(8, 8), conv_stride=(5, 64), conv_kernel=(10, 64), num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=2, classifier_proj_size=8, id2label=LABELS,
        label2id={v: k for k, v in LABELS.items()},
    )  # fmt: skip
    torch.manual_seed(0)
    model = Classifier(config).eval()
    with torch.no_grad():
        model.projector.weight.mul_(10)  # probabilities far from uniform
        model.classifier.weight.mul_(30)
    model.save_pretrained(path)
    Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(path)
    return path, model


def test_an_mms_lid_folder_gives_transformers_own_probabilities(tmp_path):
    folder, reference = make_mms_lid_folder(tmp_path / "mms-lid")
    clip = sine(220, 1.5, 16000) + sine(600, 1.5, 16000, 0.2)
    model = LidModel(folder, precision="float32")
    assert model.languages == ["deu", "eng", "fra"]
    got = model.probabilities([clip])[0]
    audio = torch.from_numpy(clip)
    audio = (audio - audio.mean()) / torch.sqrt(audio.var() + 1e-7)
    with torch.no_grad():
        expected = torch.softmax(reference(audio[None]).logits, -1)[0].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert expected.max() > 0.5  # a decision, not a uniform guess
    int8 = LidModel(folder, precision="int8").probabilities([clip])[0]
    assert np.abs(int8 - expected).max() < 0.05
    found = model.identify(clip, top_k=2, vad=False)
    assert [g.lang for g in found.languages] == [model.labels[i] for i in np.argsort(-got)[:2]]


@pytest.fixture(scope="module")
def trained_lid(tiny_corpus, tmp_path_factory):
    """A LID head trained on the tiny corpus (eng, spa, fin) over builtin:ctc's base."""
    out = tmp_path_factory.mktemp("lid")
    config = LidTrainConfig(max_steps=150, warmup_steps=10, eval_every=75, batch_size=16)
    summary = train_lid(
        [tiny_corpus / "train.jsonl"], tiny_corpus / "dev.jsonl", "builtin:ctc", out, config
    )
    return out, summary


def test_the_head_learns_its_languages_and_the_folder_loads(trained_lid, tiny_corpus):
    out, summary = trained_lid
    assert summary["labels"] == ["eng", "fin", "spa"]
    assert [h["step"] for h in summary["history"]] == [75, 150]
    assert 0.0 <= summary["history"][-1]["dev_accuracy_3s"] <= 1.0
    base = resolve_model("builtin:ctc").folder / "model.safetensors"
    assert (out / "model" / "model.safetensors").read_bytes() == base.read_bytes()  # stored once
    model = LidModel(out / "model")
    entries = list(read_manifest(tiny_corpus / "train.jsonl"))
    probabilities = model.probabilities([load_entry_audio(e) for e in entries])
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-5)
    guessed = [model.labels[i] for i in probabilities.argmax(1)]
    right = np.mean([g == e.lang for g, e in zip(guessed, entries, strict=True)])
    assert right > 0.9, right  # its own training clips: chance is 1/3


def test_identify_from_the_cli_per_file_and_per_segment(trained_lid, tiny_corpus, tmp_path, cli):
    out, _ = trained_lid
    entries = {e.lang: e for e in read_manifest(tiny_corpus / "train.jsonl")}
    pieces = []
    for lang in ("eng", "spa"):
        pieces += [load_entry_audio(entries[lang]), np.zeros(16000, np.float32)]
    path = tmp_path / "two.wav"
    soundfile.write(path, np.concatenate(pieces), 16000)
    result = cli("identify", path, "--model", out / "model", "--json", "--segments", "--top-k", 2)
    assert result.code == 0, result.stderr
    line = json.loads(result.stdout)
    assert line["file"] == str(path) and len(line["languages"]) == 2
    probs = [g["prob"] for g in line["languages"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001
    assert len(line["segments"]) == 2 and line["segments"][0]["end"] < line["segments"][1]["start"]
    plain = cli("identify", path, "--model", out / "model")
    assert plain.code == 0 and plain.stdout.startswith(f"{path}: ")
    silent = tmp_path / "silent.wav"
    soundfile.write(silent, np.zeros(32000, np.float32), 16000)
    assert cli("identify", silent, "--model", out / "model").stdout.endswith(": no speech\n")


def test_identify_mistakes_are_one_line_errors(
    trained_lid, conformer_folder, tiny_corpus, tmp_path, cli
):
    out, _ = trained_lid
    path = tmp_path / "tone.wav"
    soundfile.write(path, sine(300, 1.0, 16000), 16000)
    not_lid = cli("identify", path, "--model", conformer_folder[0])
    assert not_lid.code == 2 and "not a language-ID model" in not_lid.stderr
    zero = cli("identify", path, "--model", out / "model", "--top-k", "0")
    assert zero.code == 2 and "Invalid value for '--top-k'" in zero.stderr
    missing = cli("identify", tmp_path / "gone.wav", "--model", out / "model")
    assert missing.code == 2 and "gone.wav" in missing.stderr
    one = tmp_path / "eng.jsonl"
    write_manifest(one, [e for e in read_manifest(tiny_corpus / "train.jsonl") if e.lang == "eng"])
    with pytest.raises(InputError, match="needs two languages or more"):
        train_lid([one], tiny_corpus / "dev.jsonl", "builtin:ctc", tmp_path / "r", LidTrainConfig())


def test_the_library_call_and_the_lid_evaluation(trained_lid, tiny_corpus, tmp_path, cli):
    import polyspeech

    out, _ = trained_lid
    entry = next(iter(read_manifest(tiny_corpus / "dev.jsonl")))
    found = polyspeech.identify(entry.audio, out / "model", top_k=3)
    assert sorted(g.lang for g in found.languages) == ["eng", "fin", "spa"]
    assert found.segments and found.duration > 0
    report_path = tmp_path / "lid.json"
    result = cli(
        "evaluate", tiny_corpus / "dev.jsonl", "--task", "lid", "--model", out / "model",
        "--max-seconds", "3", "--json", report_path,
    )  # fmt: skip
    assert result.code == 0, result.stderr
    report = json.loads(report_path.read_text())
    confusion = report["confusion"]
    assert set(report["per_lang"]) == {"eng", "fin", "spa"} and report["max_seconds"] == 3
    assert sum(sum(row.values()) for row in confusion.values()) == 6  # 2 dev clips each
    right = sum(confusion[lang].get(lang, 0) for lang in confusion)
    assert report["accuracy"] == right / 6 and "first 3 s" in result.stdout
    wrong = cli("evaluate", tiny_corpus / "dev.jsonl", "--max-seconds", "3")
    assert wrong.code == 2 and "--max-seconds is for language ID" in wrong.stderr


def test_builtin_lid_is_the_default_and_names_each_example(cli):
    """builtin:lid on the committed examples (held-out test clips, one per language)."""
    examples = Path(__file__).resolve().parents[2] / "examples"
    rows = [json.loads(line) for line in (examples / "examples.jsonl").read_text().splitlines()]
    result = cli("identify", *[examples / r["audio"] for r in rows], "--json", "--top-k", "2")
    assert result.code == 0, result.stderr
    found = [json.loads(line) for line in result.stdout.splitlines()]
    assert [f["languages"][0]["lang"] for f in found] == [r["lang"] for r in rows]
    assert all(len(f["languages"]) == 2 for f in found)


def test_identify_takes_a_vad_threshold(tmp_path, monkeypatch):
    import polyspeech.lid.model as lid

    folder, _ = make_mms_lid_folder(tmp_path / "mms-lid")
    model = LidModel(folder, precision="float32")
    clip = sine(220, 1.5, 16000)
    heard, real = [], lid.pieces

    def spy(files, max_seconds, vad, threshold=0.5):
        heard.append(threshold)
        return real(files, max_seconds, vad, threshold=threshold)

    monkeypatch.setattr(lid, "pieces", spy)
    model.identify(clip, vad=False, vad_threshold=0.3)
    assert heard == [0.3]
    with pytest.raises(InputError, match="vad threshold must be between 0 and 1"):
        model.identify(clip, vad_threshold=1.0)


def test_models_lists_builtin_lid_with_its_shared_base(cli):
    encoder = resolve_model("builtin:speechllm").folder / "encoder" / "model.safetensors"
    listed = cli("models")
    (row,) = [line for line in listed.stdout.splitlines() if line.startswith("builtin:lid ")]
    assert f"+ {encoder.stat().st_size / 1e6:.1f} MB shared" in row


def test_builtin_lid_stores_its_base_once_and_refuses_other_weights(tmp_path):
    import shutil

    from polyspeech.files import file_sha256

    lid = resolve_model("builtin:lid").folder
    encoder = resolve_model("builtin:speechllm").folder / "encoder" / "model.safetensors"
    shared = json.loads((lid / "config.json").read_text())["base_weights"]
    assert not (lid / "model.safetensors").exists()
    assert (lid / shared["path"]).resolve() == encoder.resolve()
    assert shared["sha256"] == file_sha256(encoder)
    # a copy whose named file holds other weights: an error naming it, not a wrong model
    copy = tmp_path / "assets"
    shutil.copytree(lid, copy / "lid")
    (copy / "speechllm" / "encoder").mkdir(parents=True)
    other = copy / "speechllm" / "encoder" / "model.safetensors"
    other.write_bytes(encoder.read_bytes()[:-1] + b" ")
    with pytest.raises(InputError, match=r"model\.safetensors: not the base weights .* names"):
        LidModel(copy / "lid")
    other.write_bytes(encoder.read_bytes())  # the same bytes: loads
    assert LidModel(copy / "lid").labels == LidModel("builtin:lid").labels


def test_a_temperature_softens_the_answers_and_keeps_their_order(trained_lid, tiny_corpus):
    out, _ = trained_lid
    clips = [load_entry_audio(e) for e in list(read_manifest(tiny_corpus / "dev.jsonl"))[:4]]
    sharp = LidModel(out / "model").probabilities(clips)
    config_file = out / "model" / "config.json"
    config = json.loads(config_file.read_text())
    try:
        config_file.write_text(json.dumps({**config, "temperature": 4.0}))
        soft = LidModel(out / "model").probabilities(clips)
        config_file.write_text(json.dumps({**config, "temperature": 0}))
        with pytest.raises(InputError, match="temperature must be > 0"):
            LidModel(out / "model")
    finally:
        config_file.write_text(json.dumps(config))
    np.testing.assert_allclose(
        soft, torch.softmax(torch.log(torch.tensor(sharp)) / 4, 1), atol=1e-4
    )
    assert (soft.argmax(1) == sharp.argmax(1)).all() and soft.max() < sharp.max()


def test_the_fitted_temperature_is_the_one_the_answers_were_drawn_at():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 6, (4000, 5))  # a model's answers: sure of itself at temperature 1
    truth = 3.0  # how sure it ought to be: labels drawn from softmax(logits / 3)
    probabilities = torch.softmax(torch.tensor(logits) / truth, 1).numpy()
    labels = np.array([rng.choice(5, p=row) for row in probabilities])
    assert fit_temperature(logits, labels) == pytest.approx(truth, rel=0.1)
    assert fit_temperature(logits, logits.argmax(1)) < 1  # always right: sharper still
