"""`polyspeech speak`: MMS-TTS (VITS) folders and the espeak-ng fallback."""

import json

import numpy as np
import pytest
import soundfile
import torch

import polyspeech
from polyspeech.errors import InputError
from polyspeech.tts import espeak_voice

LETTERS = ["_", " ", *"abcdefghijklmnopqrstuvwxyz", "'"]


def make_vits_folder(path, uroman: bool, language: str | None = None):
    """A tiny random VitsModel in MMS-TTS's layout (characters, no phonemiser); ``language``
    is its tokenizer's, as MMS-TTS's tokenizer_config.json names the voice's language."""
    from transformers import VitsConfig, VitsModel, VitsTokenizer

    path.mkdir(parents=True)
    (path / "vocab.json").write_text(json.dumps({c: i for i, c in enumerate(LETTERS)}))
    tokenizer = VitsTokenizer(
        path / "vocab.json", language=language, is_uroman=uroman, phonemize=False
    )
    tokenizer.save_pretrained(path)
    config = VitsConfig(
        vocab_size=len(LETTERS), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        window_size=2, ffn_dim=16, flow_size=16, spectrogram_bins=20, upsample_initial_channel=16,
        upsample_rates=[4, 4], upsample_kernel_sizes=[8, 8], resblock_kernel_sizes=[3],
        resblock_dilation_sizes=[[1, 2]], depth_separable_channels=2, depth_separable_num_layers=2,
        duration_predictor_filter_channels=16, duration_predictor_num_flows=2,
        prior_encoder_num_flows=2, prior_encoder_num_wavenet_layers=2,
        posterior_encoder_num_wavenet_layers=2, sampling_rate=16000,
    )  # fmt: skip
    torch.manual_seed(0)
    VitsModel(config).save_pretrained(path)
    return path


def test_a_vits_folder_speaks_reproducibly_at_16k(tmp_path, cli):
    folder = make_vits_folder(tmp_path / "mms-tts-eng", uroman=False)
    outputs = {}
    for name, seed, rate in (("a", 1, 1.0), ("b", 1, 1.0), ("c", 2, 1.0), ("fast", 1, 2.0)):
        out = tmp_path / f"{name}.wav"
        args = ["--model", folder, "--output", out, "--seed", seed, "--speaking-rate", rate]
        result = cli("speak", "hello world", *args)
        assert result.code == 0, result.stderr
        outputs[name], sample_rate = soundfile.read(out, dtype="float32")
        assert sample_rate == 16000
    assert np.array_equal(outputs["a"], outputs["b"])  # same seed, same audio
    assert not np.array_equal(outputs["a"][:1000], outputs["c"][:1000])
    assert len(outputs["fast"]) < 0.75 * len(outputs["a"])


def test_a_uroman_voice_reads_other_scripts_romanised(tmp_path):
    romanising = make_vits_folder(tmp_path / "uroman", uroman=True)
    plain = make_vits_folder(tmp_path / "plain", uroman=False)
    samples = polyspeech.speak("привет мир", "rus", romanising)
    assert samples.dtype == np.float32 and len(samples) > 1000
    with pytest.raises(InputError, match="nothing in 'привет мир' that this voice can read"):
        polyspeech.speak("привет мир", "rus", plain)


def test_a_voice_romanises_with_its_own_language_and_refuses_another(tmp_path, cli, monkeypatch):
    import polyspeech.tts.vits as vits

    folder = make_vits_folder(tmp_path / "mms-tts-rus", uroman=True, language="rus")
    assert json.loads((folder / "tokenizer_config.json").read_text())["language"] == "rus"
    original, asked = vits.romanize, []

    def romanize(text, lang):
        asked.append(lang)
        return original(text, lang)

    monkeypatch.setattr(vits, "romanize", romanize)
    spoken = polyspeech.speak("привет мир", model=folder)
    assert polyspeech.speak("привет мир", "ru", folder).tolist() == spoken.tolist()
    assert asked == ["rus", "rus"]  # uroman's Russian rules, asked for or not
    with pytest.raises(InputError) as error:
        polyspeech.speak("hallo", "deu", folder)
    assert str(error.value) == (
        f"{folder}: this voice speaks rus, not deu; leave out --lang or choose a voice of that "
        "language"
    )
    out = tmp_path / "hallo.wav"
    result = cli("speak", "hallo", "--lang", "de", "--model", folder, "--output", out)
    assert result.code == 2 and not out.exists()
    assert result.stderr.strip().splitlines() == [
        f"polyspeech: error: {folder}: this voice speaks rus, not de; leave out --lang or "
        "choose a voice of that language"
    ]


def test_without_a_model_espeak_speaks_the_language(tmp_path, cli):
    out = tmp_path / "hola.flac"
    result = cli("speak", "Buenos días, ¿cómo estás?", "--lang", "es", "--output", out)
    assert result.code == 0, result.stderr
    samples, sample_rate = soundfile.read(out, dtype="float32")
    assert sample_rate == 16000 and 0.8 < len(samples) / 16000 < 5
    assert np.abs(samples).max() > 0.05
    # the same sentence, in the library, after something else: the same audio (16-bit in FLAC)
    polyspeech.speak("Hasta mañana.", "spa")
    again = polyspeech.speak("Buenos días, ¿cómo estás?", "spa")
    assert len(again) == len(samples) and np.abs(again - samples).max() <= 1 / 32768
    assert np.array_equal(again, polyspeech.speak("Buenos días, ¿cómo estás?", "spa"))
    assert espeak_voice("swh") == "sw" and espeak_voice("is") == "is"  # beyond the corpus


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["hello", "--output", "x.wav"], "espeak-ng needs the language"),
        (["hello", "--lang", "xx", "--output", "x.wav"], "unknown language code 'xx'"),
        (["hello", "--lang", "eng", "--output", "x.mp3"], "write .flac or .wav, not .mp3"),
        (["  ", "--lang", "eng", "--output", "x.wav"], "nothing to speak"),
        (["hello", "--lang", "eng", "--output", "x.wav", "--speaking-rate", "9"], "use 0.25 to 4"),
    ],
)
def test_speak_mistakes_are_one_line_errors_and_write_nothing(tmp_path, cli, args, problem,
                                                              monkeypatch):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    result = cli("speak", *args)
    assert result.code == 2 and problem in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
