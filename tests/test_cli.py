import hashlib
import json
import os
import sys
from pathlib import Path

import pytest
import soundfile

from polyspeech.text.ngram import read_arpa
from tests.audio.test_io import BAD_INPUTS
from tests.conftest import sine


def write_manifest_for(tmp_path, audio, duration=1.0, **fields):
    manifest = tmp_path / "m.jsonl"
    record = {"audio": str(audio), "text": "hello", "lang": "en", "duration": duration, **fields}
    manifest.write_text(json.dumps(record) + "\n")
    return manifest


def test_validate_reports_hours_per_language(tmp_path, cli):
    soundfile.write(tmp_path / "a.flac", sine(440, 1.8, 16000), 16000)
    result = cli("data", "validate", write_manifest_for(tmp_path, "a.flac", 1.8))
    assert result.code == 0, result.stderr
    assert "eng\t0.001 h" in result.stdout
    assert "valid" in result.stdout


@pytest.mark.parametrize(("make", "problem"), BAD_INPUTS)
def test_bad_audio_gives_one_line_and_exit_2(tmp_path, cli, make, problem):
    path = make(tmp_path)
    result = cli("data", "validate", write_manifest_for(tmp_path, path))
    assert result.code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("polyspeech: error: ")
    assert str(path) in lines[0] and problem in lines[0]
    assert "Traceback" not in result.stderr


def test_audio_over_the_limit_from_the_cli(tmp_path, cli):
    soundfile.write(tmp_path / "long.flac", sine(440, 5.0, 16000), 16000)
    manifest = write_manifest_for(tmp_path, "long.flac", 5.0)
    result = cli("data", "validate", manifest, "--max-duration", "4")
    assert result.code == 2
    assert result.stderr.strip().endswith("audio is 5.0 s long, over the limit of 4 s")
    assert str(tmp_path / "long.flac") in result.stderr


def test_duration_that_disagrees_with_the_audio(tmp_path, cli):
    soundfile.write(tmp_path / "a.flac", sine(440, 1.0, 16000), 16000)
    result = cli("data", "validate", write_manifest_for(tmp_path, "a.flac", 3.0))
    assert result.code == 2
    assert "manifest says 3.00 s, audio is 1.00 s" in result.stderr


def test_no_arguments_shows_help(cli):
    result = cli()
    assert "data" in result.stdout + result.stderr


def test_version(cli):
    import polyspeech

    result = cli("--version")
    assert (result.code, result.stdout) == (0, f"polyspeech {polyspeech.__version__}\n")


def test_transcribe_writes_each_format(tmp_path, cli, conformer_folder):
    folder, _ = conformer_folder
    soundfile.write(tmp_path / "a.flac", sine(440, 1.0, 16000), 16000)
    for output_format in ["txt", "json", "srt", "vtt", "tsv"]:
        result = cli(
            "transcribe",
            tmp_path / "a.flac",
            "--model",
            folder,
            "--lang",
            "eng",
            "--no-vad",
            "--output-format",
            output_format,
            "--output-dir",
            tmp_path / "out",
        )
        assert result.code == 0, result.stderr
        assert (tmp_path / "out" / f"a.{output_format}").is_file()
    record = json.loads((tmp_path / "out" / "a.json").read_text())
    assert record["language"] == "eng" and record["duration"] == 1.0


def test_transcribe_a_manifest(tmp_path, cli, conformer_folder):
    folder, _ = conformer_folder
    soundfile.write(tmp_path / "a.flac", sine(440, 1.0, 16000), 16000)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        '{"audio": "a.flac", "text": "x", "lang": "eng", "duration": 1.0, "id": "one"}\n'
        '{"audio": "a.flac", "text": "x", "lang": "zh", "duration": 1.0, "id": "two"}\n'
    )
    result = cli("transcribe", "--manifest", manifest, "--model", folder, "--no-vad")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(line["id"], line["language"]) for line in lines] == [("one", "eng"), ("two", "cmn")]


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--output-format", "docx"], "unknown output format 'docx'"),
        (["--lang", "fin"], "no adapter for fin; available: cmn, eng"),
        (["--lang", "xx"], "unknown language code 'xx'"),
    ],
)
def test_transcribe_bad_options(tmp_path, cli, conformer_folder, args, problem):
    soundfile.write(tmp_path / "a.flac", sine(440, 1.0, 16000), 16000)
    result = cli("transcribe", tmp_path / "a.flac", "--model", conformer_folder[0], *args)
    assert result.code == 2 and problem in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_transcribe_missing_model_and_input(tmp_path, cli):
    result = cli("transcribe", tmp_path / "a.flac", "--model", tmp_path / "nomodel")
    assert result.code == 2 and "model folder not found" in result.stderr
    assert cli("transcribe").code == 2


def test_languages_lists_the_adapters(cli, conformer_folder):
    result = cli("languages", "--model", conformer_folder[0])
    assert result.code == 0 and result.stdout.split() == ["cmn", "eng"]


def test_train_lm_then_transcribe_with_it(tmp_path, cli, conformer_folder):
    soundfile.write(tmp_path / "a.flac", sine(440, 1.0, 16000), 16000)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        '{"audio": "a.flac", "text": "Hello, world!", "lang": "eng", "duration": 1.0}\n'
        '{"audio": "a.flac", "text": "\u4f60\u597d", "lang": "cmn", "duration": 1.0}\n'
    )
    (tmp_path / "m2.jsonl").write_text(
        '{"audio": "a.flac", "text": "Bonjour !", "lang": "fra", "duration": 1.0}\n'
    )
    result = cli(
        "train", "lm", manifest, tmp_path / "m2.jsonl", "--out", tmp_path / "lm", "--order", "3"
    )
    assert result.code == 0, result.stderr
    names = sorted(p.name for p in (tmp_path / "lm").iterdir())
    assert names == ["cmn.arpa.gz", "eng.arpa.gz", "fra.arpa.gz"]
    for lang in ["eng", "cmn"]:
        result = cli(
            "transcribe", tmp_path / "a.flac", "--model", conformer_folder[0], "--lang", lang,
            "--no-vad", "--lm", tmp_path / "lm", "--output-format", "json",
        )  # fmt: skip
        assert result.code == 0, result.stderr
        assert json.loads(result.stdout)["language"] == lang
    (tmp_path / "lm" / "cmn.arpa.gz").unlink()
    result = cli(
        "transcribe", tmp_path / "a.flac", "--model", conformer_folder[0], "--lang", "cmn",
        "--lm", tmp_path / "lm",
    )  # fmt: skip
    assert result.code == 2 and "no language model for 'cmn'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = cli("train", "lm", manifest, "--out", tmp_path / "lm2", "--langs", "fin")
    assert result.code == 2 and "no lines in the languages asked for" in result.stderr


def test_train_lm_with_more_text_and_count_cut_offs(tmp_path, cli):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        '{"audio": "a.flac", "text": "\u4f60\u597d", "lang": "cmn", "duration": 1.0}\n'
        '{"audio": "a.flac", "text": "Hello", "lang": "eng", "duration": 1.0}\n'
    )
    (tmp_path / "more.txt").write_text(
        "\u4eca\u5929\u5f88\u597d\u3002\n\n\u5929\u6c14\u5f88\u597d\n"
    )
    result = cli(
        "train", "lm", manifest, "--out", tmp_path / "lm", "--langs", "cmn",
        "--text", tmp_path / "more.txt", "--min-count", "2", "--order", "3",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    assert "cmn: 3 lines" in result.stdout
    lm = read_arpa(tmp_path / "lm" / "cmn.arpa.gz")
    assert ("\u5f88", "\u597d", "</s>") in lm.probs  # seen twice
    assert ("\u4eca", "\u5929", "\u5f88") not in lm.probs  # seen once, cut
    assert ("\u4eca", "\u5929") in lm.probs  # two characters: never cut
    result = cli(
        "train", "lm", manifest, "--out", tmp_path / "lm2", "--text", tmp_path / "more.txt"
    )
    assert result.code == 2 and "more.txt: more text is for one language" in result.stderr
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\x00bad")
    result = cli(
        "train", "lm", manifest, "--out", tmp_path / "lm3", "--langs", "cmn",
        "--text", tmp_path / "bad.txt",
    )  # fmt: skip
    assert result.code == 2 and "bad.txt: text file is not UTF-8 text" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "lm3").exists()
    result = cli("train", "lm", manifest, "--out", tmp_path / "lm4", "--min-count", "0")
    assert result.code == 2 and "Invalid value for '--min-count'" in result.stderr


def write_hub_cache(cache: Path, repo_id: str, folder: Path, ref: str = "main") -> str:
    """Every file of ``folder`` as one commit of ``repo_id`` in a Hugging Face cache laid out as
    huggingface_hub writes it: content in ``blobs/`` named by ETag (sha256 of weights, git's
    blob sha1 of the rest), ``snapshots/<commit>/`` linking to them, ``refs/<ref>`` naming the
    commit. Returns the commit."""
    storage = cache / f"models--{repo_id.replace('/', '--')}"
    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")}
    files = {name: data for name, data in files.items() if (folder / name).is_file()}
    commit = hashlib.sha1(repr(sorted(files.items())).encode()).hexdigest()
    for name, data in files.items():
        if name.endswith(".safetensors"):
            etag = hashlib.sha256(data).hexdigest()
        else:
            etag = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        blob = storage / "blobs" / etag
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = storage / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (storage / "refs").mkdir(exist_ok=True)
    (storage / "refs" / ref).write_text(commit)
    return commit


def use_offline_cache(monkeypatch, cache: Path) -> None:
    """``cache`` as the Hugging Face cache, the Hub offline (as the environment and as the
    imported client read it)."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


@pytest.fixture
def offline_hub(tmp_path, monkeypatch, conformer_folder):
    """The tiny two-language conformer as ``org/tiny`` in a Hugging Face cache under
    ``tmp_path``, with the Hub offline: ``(cache, commit)``."""
    cache = tmp_path / "hf-cache"
    commit = write_hub_cache(cache, "org/tiny", conformer_folder[0])
    use_offline_cache(monkeypatch, cache)
    return cache, commit


def test_a_cached_model_is_used_offline_and_results_say_which_commit(tmp_path, cli, offline_hub):
    cache, commit = offline_hub
    soundfile.write(tmp_path / "a.flac", sine(440, 1.0, 16000), 16000)
    args = ["transcribe", tmp_path / "a.flac", "--lang", "eng", "--no-vad", "--output-format"]
    result = cli(*args, "json", "--model", "org/tiny")
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["source"] == {
        "model": "org/tiny", "repo": "org/tiny", "revision": commit, "hub": "huggingface"
    }  # fmt: skip
    pinned = cli(*args, "json", "--model", "org/tiny", "--revision", commit)
    assert pinned.code == 0, pinned.stderr
    assert json.loads(pinned.stdout)["source"]["model"] == f"org/tiny@{commit}"
    assert cli(*args, "json", "--model", f"org/tiny@{commit}").stdout == pinned.stdout
    listed = cli("models")
    assert listed.code == 0, listed.stderr
    (row,) = [line.split() for line in listed.stdout.splitlines() if line.startswith("org/")]
    size = sum(p.stat().st_size for p in (cache / "models--org--tiny" / "blobs").iterdir())
    assert row[:3] == ["org/tiny", commit, "main"] and row[-2:] == ["cmn", "eng"]
    assert f"{size / 1000:.1f} kB" == " ".join(row[3:5])
    (cache / "models--org--broken").mkdir()  # no snapshots: the scan cannot read it
    listed = cli("models")
    assert listed.code == 0 and f"org/tiny  {commit}" in listed.stdout
    (warning,) = listed.stderr.splitlines()
    assert warning.startswith("polyspeech: warning: ") and "models--org--broken" in warning
    fetched = cli("download", "org/tiny", "--lang", "eng")
    assert fetched.code == 0, fetched.stderr
    assert (
        fetched.stdout
        == f"nothing to fetch: org/tiny at {commit} is in the cache, in "
        + str(cache / "models--org--tiny" / "snapshots" / commit)
        + "\n"
    )


def test_an_adapter_not_cached_offline_names_the_command_that_fetches_it(
    tmp_path, cli, offline_hub
):
    cache, commit = offline_hub
    (cache / "models--org--tiny" / "snapshots" / commit / "adapter.cmn.safetensors").unlink()
    soundfile.write(tmp_path / "a.flac", sine(440, 1.0, 16000), 16000)
    result = cli(
        "transcribe", tmp_path / "a.flac", "--model", "org/tiny", "--lang", "cmn", "--no-vad"
    )
    assert result.code == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "org/tiny" in line and "adapter.cmn.safetensors" in line
    assert line.endswith("polyspeech download org/tiny --lang cmn")
    listed = cli("models")
    assert [line.split()[-1] for line in listed.stdout.splitlines() if "org/tiny" in line] == [
        "eng"
    ]


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--model", "builtin:ctc", "--revision", "main"], "--model builtin:ctc is a builtin or "
         "local model; a revision is for Hub ids"),
        (["--model", "org/tiny@main", "--revision", "v2"], "two revisions, 'main' in the id and "
         "'v2' given"),
        (["--model", "org/tiny", "--revision", " "], "--revision: empty"),
        (["--model", "org/absent"], "org/absent: not in the Hugging Face cache"),
        (["--model", "org/tiny", "--revision", "v2"], "fetch it with network access: polyspeech "
         "download org/tiny@v2"),
    ],
)  # fmt: skip
def test_bad_model_ids_and_revisions(tmp_path, cli, offline_hub, args, problem):
    soundfile.write(tmp_path / "a.flac", sine(440, 1.0, 16000), 16000)
    result = cli("transcribe", tmp_path / "a.flac", "--lang", "eng", *args)
    assert result.code == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert problem in line


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["evaluate", "m.jsonl", "--model", "org/a", "--model", "org/b", "--revision", "v1"],
         "--revision pins one --model; with several, write each ORG/NAME@REV"),
        (["serve", "--model", "a=org/a", "--model", "org/b", "--revision", "v1"],
         "--revision pins one --model"),
        (["speak", "hello", "--lang", "eng", "--output", "a.wav", "--revision", "v1"],
         "--revision v1: it is the revision of --model; give --model"),
        (["train", "speechllm", "m.jsonl", "--out", "out", "--revision", "v1"],
         "--revision v1: it is the revision of --base; give --base"),
        (["download", "builtin:ctc"], "builtin:ctc: polyspeech download takes a Hub id"),
        (["download", "org/tiny", "--revision", ""], "--revision: empty"),
        (["download", "org/absent"], "org/absent: not in the Hugging Face cache"),
    ],
)  # fmt: skip
def test_revision_and_download_mistakes_are_one_line(
    tmp_path, monkeypatch, cli, offline_hub, args, problem
):
    monkeypatch.chdir(tmp_path)  # the relative paths of the command lines
    result = cli(*args)
    assert result.code == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert problem in line
    assert not (tmp_path / "a.wav").exists() and not (tmp_path / "out").exists()


def decimal_size(count: int) -> str:
    return f"{count} B" if count < 1000 else f"{count / 1000:.1f} kB"


def test_download_prints_each_file_fetched_and_a_second_run_fetches_nothing(
    cli, online_hub, conformer_folder
):
    folder = conformer_folder[0]
    files = {p.name: p for p in folder.iterdir()}
    commit = online_hub.add_repo("org/tiny", files)
    result = cli("download", "org/tiny", "--lang", "en")
    assert result.code == 0, result.stderr
    *lines, total = result.stdout.splitlines()
    wanted = ["config.json", "model.safetensors", "vocab.json", "adapter.eng.safetensors"]
    assert lines == [f"{decimal_size(files[n].stat().st_size):>10}  {n}" for n in wanted]
    size = decimal_size(sum(files[name].stat().st_size for name in wanted))
    assert total.startswith(f"fetched 4 files, {size}: org/tiny at {commit}, in ")
    assert sorted(online_hub.file_gets()) == sorted(wanted)  # not adapter.cmn
    online_hub.reset_counts()
    again = cli("download", "org/tiny", "--lang", "eng")
    assert again.code == 0, again.stderr
    assert again.stdout.startswith(f"nothing to fetch: org/tiny at {commit} is in the cache")
    assert online_hub.file_gets() == []
    listed = cli("models")
    assert listed.code == 0 and listed.stderr == ""
    (row,) = [line.split() for line in listed.stdout.splitlines() if line.startswith("org/")]
    assert row[:3] == ["org/tiny", commit, "main"] and row[-1] == "eng"
    unknown = cli("download", "org/nothing")
    assert unknown.code == 2 and "org/nothing: no such model" in unknown.stderr
    revision = cli("download", "org/tiny", "--revision", "v9")
    assert revision.code == 2 and "org/tiny has no revision 'v9'" in revision.stderr


def test_models_lists_the_modelscope_cache_without_its_client(tmp_path, cli, monkeypatch):
    use_offline_cache(monkeypatch, tmp_path / "hf-cache")
    cache = tmp_path / "ms-cache"
    monkeypatch.setenv("MODELSCOPE_CACHE", str(cache))
    monkeypatch.setitem(sys.modules, "modelscope_hub", None)  # as without the package
    listed = cli("models")
    assert listed.code == 0, listed.stderr
    none = "no models (fetch one: polyspeech download modelscope:ORG/NAME)"
    assert listed.stdout.endswith(f"ModelScope cache {cache}:\n{none}\n")
    snapshot = cache / "models" / "org--mms" / "snapshots" / "v1.0"  # as the client writes it
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_bytes(b"{}" * 1000)
    (snapshot / "adapter.fra.safetensors").write_bytes(b"f" * 500)
    (snapshot / "adapter.deu.safetensors").write_bytes(b"d" * 500)
    listed = cli("models")
    assert listed.code == 0 and listed.stderr == ""
    header, row = listed.stdout.split(f"ModelScope cache {cache}:\n")[1].splitlines()
    assert header.split() == ["ID", "REVISION", "SIZE", "LANGUAGES"]
    assert row.split() == ["modelscope:org/mms", "v1.0", "3.0", "kB", "deu", "fra"]
