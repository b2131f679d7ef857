"""MMS's published layouts as they are: script-suffixed and MMS's own language keys, the English
adapter carried by mms-1b-all's base weights, MMS-LID's labels as published, and the files a
download leaves out. Tiny models made in the test; the Hub is tests/hub/online_hub.py."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from polyspeech.ctc.model import CtcModel
from polyspeech.hub import download
from polyspeech.lid.model import LidModel
from tests.conftest import one_line_error, sine
from tests.ctc.test_model import make_mms_folder
from tests.hub.conftest import publish
from tests.lid.test_lid import make_mms_lid_folder

CLIP = sine(300, 1.0, 16000)
# mms-1b-all's keys with a script, and MMS's own codes that to_iso639_3 would change
EXTRA_KEYS = {
    "cmn-script_simplified": "fra",
    "azj-script_latin": "fra",
    "azj-script_cyrillic": "eng",
    "tgl": "fra",
    "ara": "eng",
}


def go_offline(monkeypatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def with_keys(folder, keys: dict[str, str]):
    """``folder``'s model with more languages: each new key a copy of an existing language's
    vocabulary and adapter."""
    vocab = json.loads((folder / "vocab.json").read_text())
    for key, like in keys.items():
        vocab[key] = vocab[like]
        shutil.copy(folder / f"adapter.{like}.safetensors", folder / f"adapter.{key}.safetensors")
    (folder / "vocab.json").write_text(json.dumps(vocab))
    return folder


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    """A tiny MMS model with mms-1b-all's kinds of keys, loaded from its folder."""
    folder = with_keys(make_mms_folder(tmp_path_factory.mktemp("keyed") / "mms"), EXTRA_KEYS)
    return CtcModel(folder)


@pytest.mark.parametrize(
    ("asked", "key"),
    [
        ("cmn-script_simplified", "cmn-script_simplified"),  # the key itself
        ("cmn", "cmn-script_simplified"),  # the only key of that code
        ("zh", "cmn-script_simplified"),  # ISO 639-1, its ISO 639-3 code's only key
        ("azj-script_cyrillic", "azj-script_cyrillic"),
        ("azj-Latn", "azj-script_latin"),  # a BCP-47 script
        ("tgl", "tgl"),  # MMS's own code, not to_iso639_3's fil
        ("tl", "tgl"),
        ("ar", "ara"),  # MMS has ara, not to_iso639_3's arb
        ("en", "eng"),
    ],
)
def test_a_language_finds_its_published_key(keyed, asked, key):
    assert keyed.resolve_language(asked) == key


def test_a_code_of_several_scripts_or_none_is_one_line_listing_them(keyed):
    message = one_line_error(keyed.resolve_language, "azj")
    assert message == (
        f"{keyed.folder}: azj is written in several scripts here; choose one of "
        "azj-script_cyrillic, azj-script_latin"
    )
    message = one_line_error(keyed.resolve_language, "yue")
    assert message.startswith(f"{keyed.folder / 'adapter.yue.safetensors'}: no adapter for yue")
    assert message.endswith(
        "available: ara, azj-script_cyrillic, azj-script_latin, cmn-script_simplified, eng, "
        "fra, tgl"
    )
    assert "no adapter for srp" in one_line_error(keyed.resolve_language, "sr-Cyrl")


def test_a_script_key_transcribes_under_its_own_name(keyed):
    by_code = keyed.transcribe(CLIP, language="zh", vad_filter=False, lm="none")
    assert by_code.language == "cmn-script_simplified"
    np.testing.assert_array_equal(
        keyed.log_probs([CLIP], "cmn")[0], keyed.log_probs([CLIP], "cmn-script_simplified")[0]
    )


def test_results_name_the_model_they_came_from(keyed):
    result = keyed.transcribe(CLIP, language="eng", vad_filter=False, lm="none")
    assert result.source == keyed.source.describe()
    assert result.source == {
        "model": str(keyed.folder),
        "repo": None,
        "revision": None,
        "hub": "folder",
    }
    several = keyed.transcribe_many(
        [CLIP, CLIP[:8000]], language=["eng", "fra"], vad_filter=False, lm="none"
    )
    assert [r.source for r in several] == [keyed.source.describe()] * 2


def test_download_takes_the_same_keys(online_hub, tmp_path, cli):
    folder = with_keys(make_mms_folder(tmp_path / "mms"), EXTRA_KEYS)
    publish(online_hub, "facebook/mms-keyed", folder)
    _, fetched = download("facebook/mms-keyed", ["zh", "tgl"])
    adapters = sorted(name for name, _ in fetched if name.startswith("adapter."))
    assert adapters == ["adapter.cmn-script_simplified.safetensors", "adapter.tgl.safetensors"]
    online_hub.reset_counts()
    result = cli("download", "facebook/mms-keyed", "--lang", "cmn,ar")
    assert result.code == 0, result.stderr
    assert online_hub.file_gets() == ["adapter.ara.safetensors"]
    result = cli("download", "facebook/mms-keyed", "--lang", "azj")
    assert result.code == 2
    assert result.stderr.strip().endswith(
        "azj is written in several scripts here; choose one of azj-script_cyrillic, "
        "azj-script_latin"
    )
    message = one_line_error(download, "facebook/mms-keyed", ["deu"])
    assert "no adapter.deu.safetensors" in message


def test_the_english_adapter_in_the_base_weights_is_never_fetched(
    online_hub, tmp_path, monkeypatch
):
    from transformers import Wav2Vec2ForCTC

    folder = make_mms_folder(tmp_path / "mms")  # its base carries eng's adapter and head
    publish(online_hub, "facebook/mms-carried", folder)
    model = CtcModel("facebook/mms-carried")
    online_hub.reset_counts()
    english = model.log_probs([CLIP], "eng")[0]
    assert online_hub.file_gets() == []
    reference = Wav2Vec2ForCTC.from_pretrained(folder).eval()
    reference.load_adapter("eng")  # what transformers reads from adapter.eng.safetensors
    audio = torch.from_numpy((CLIP - CLIP.mean()) / np.sqrt(CLIP.var() + 1e-7))[None]
    with torch.no_grad():
        expected = reference(audio).logits.log_softmax(-1)[0].numpy()
    np.testing.assert_allclose(english, expected, atol=1e-4)
    model.log_probs([CLIP], "fra")
    assert online_hub.file_gets() == ["adapter.fra.safetensors"]
    np.testing.assert_array_equal(model.log_probs([CLIP], "eng")[0], english)  # back from fra
    assert online_hub.file_gets() == ["adapter.fra.safetensors"]
    go_offline(monkeypatch)
    np.testing.assert_array_equal(
        CtcModel("facebook/mms-carried").log_probs([CLIP], "eng")[0], english
    )


def test_a_base_whose_config_names_another_language_has_english_fetched(online_hub, tmp_path):
    folder = make_mms_folder(tmp_path / "mms")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "target_lang": "fra"}))
    publish(online_hub, "facebook/mms-fra-base", folder)
    model = CtcModel("facebook/mms-fra-base")
    online_hub.reset_counts()
    model.log_probs([CLIP], "eng")
    assert online_hub.file_gets() == ["adapter.eng.safetensors"]


def test_download_leaves_out_vocabs_and_scripts(online_hub, tmp_path):
    folder = make_mms_folder(tmp_path / "mms")
    (folder / "vocabs").mkdir()
    for lang in ("eng", "fra"):
        (folder / "vocabs" / f"{lang}.txt").write_text("a\nb\n")
    (folder / "create_vocab.py").write_text("print('vocab')\n")
    (folder / "download_vocabs.sh").write_text("echo vocabs\n")
    publish(online_hub, "facebook/mms-full-tree", folder)
    CtcModel("facebook/mms-full-tree")
    assert sorted(online_hub.file_gets()) == [
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "vocab.json",
    ]


def test_mms_lid_labels_are_reported_as_published(tmp_path):
    folder, _ = make_mms_lid_folder(tmp_path / "mms-lid")
    config = json.loads((folder / "config.json").read_text())
    published = {"0": "tgl", "1": "fil", "2": "prs"}  # to_iso639_3: fil, fil, fas
    (folder / "config.json").write_text(json.dumps({**config, "id2label": published}))
    model = LidModel(folder, precision="float32")
    assert model.labels == ["tgl", "fil", "prs"]
    found = model.identify(sine(220, 1.5, 16000), top_k=3, vad=False)
    assert sorted(g.lang for g in found.languages) == ["fil", "prs", "tgl"]
    twice = {"0": "deu", "1": "de", "2": "fra"}  # de is deu: one language twice
    (folder / "config.json").write_text(json.dumps({**config, "id2label": twice}))
    message = one_line_error(LidModel, folder, precision="float32")
    assert message == f"{folder / 'config.json'}: id2label names deu twice"
