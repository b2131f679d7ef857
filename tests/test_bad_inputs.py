"""Every command against one table of bad inputs: each bad file, folder, output path or
published model's id is one line on stderr naming it and the problem, exit status 2, no
traceback, and nothing left where the output would have gone. A new command is covered by adding
a row to COMMANDS. The Hugging Face Hub is offline throughout, its cache one made here."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import soundfile

from polyspeech.ctc.model import BUILTIN
from tests.audio.test_io import make_flac_cut_at_30, make_text_renamed_wav
from tests.conftest import sine
from tests.speechllm.conftest import build_mooer_folder
from tests.test_cli import use_offline_cache, write_hub_cache

WEIGHTS = ("*.safetensors", "*.pth", "*.pt")


@dataclass(frozen=True)
class Command:
    """A command line whose slots (AUDIO, TEXT, MANIFEST, MODEL, HUB_ID, OUT_FILE, OUT_DIR) a
    test fills, good or bad; ``model`` names which model folder MODEL holds, HUB_ID is the
    cached id of the CTC model."""

    name: str
    args: tuple[str, ...]
    model: str | None = None
    runs_when_good: bool = True  # cheap enough to run once with every slot good
    out_file: str = "result.json"


COMMANDS = [
    Command("transcribe", ("transcribe", "AUDIO", "--model", "MODEL", "--lang", "eng",
                           "--output-dir", "OUT_DIR"), "ctc"),
    Command("transcribe-manifest", ("transcribe", "--manifest", "MANIFEST", "--model", "MODEL"),
            "ctc"),
    Command("translate", ("translate", "AUDIO", "--model", "MODEL", "--output-dir", "OUT_DIR"),
            "speechllm"),
    Command("identify", ("identify", "AUDIO", "--model", "MODEL"), "lid"),
    Command("align", ("align", "AUDIO", "TEXT", "--model", "MODEL", "--lang", "eng",
                      "--output", "OUT_FILE"), "ctc"),
    Command("segment", ("segment", "AUDIO", "TEXT", "--model", "MODEL", "--lang", "eng",
                        "--out-dir", "OUT_DIR"), "ctc"),
    Command("evaluate", ("evaluate", "MANIFEST", "--model", "MODEL", "--json", "OUT_FILE",
                         "--quiet"), "ctc"),
    Command("languages", ("languages", "--model", "MODEL"), "ctc"),
    Command("speak", ("speak", "hello", "--lang", "eng", "--output", "OUT_FILE"),
            out_file="speech.wav"),
    Command("data validate", ("data", "validate", "MANIFEST")),
    Command("batch", ("batch", "MANIFEST", "--out", "OUT_DIR", "--quiet"), runs_when_good=False),
    Command("serve", ("serve", "--model", "MODEL", "--port", "1"), "ctc", runs_when_good=False),
    Command("data synth", ("data", "synth", "--out", "OUT_DIR"), runs_when_good=False),
    Command("data synth-parallel", ("data", "synth-parallel", "--out", "OUT_DIR"),
            runs_when_good=False),
    Command("data from-kaldi", ("data", "from-kaldi", "KALDI", "--lang", "eng", "--out",
                                "OUT_FILE"), out_file="m.jsonl"),
    Command("data to-kaldi", ("data", "to-kaldi", "MANIFEST", "--out", "OUT_DIR")),
    Command("data to-shards", ("data", "to-shards", "MANIFEST", "--out", "OUT_DIR")),
    Command("data romanize", ("data", "romanize", "MANIFEST", "--out", "OUT_FILE"),
            out_file="r.jsonl"),
    Command("train ctc", ("train", "ctc", "MANIFEST", "--dev", "MANIFEST", "--out", "OUT_DIR",
                          "--quiet"), runs_when_good=False),
    Command("train adapter", ("train", "adapter", "MANIFEST", "--dev", "MANIFEST", "--base",
                              "MODEL", "--lang", "eng", "--out", "OUT_DIR", "--quiet"), "ctc",
            runs_when_good=False),
    Command("train lid", ("train", "lid", "MANIFEST", "--dev", "MANIFEST", "--out", "OUT_DIR",
                          "--quiet"), runs_when_good=False),
    Command("train speechllm", ("train", "speechllm", "MANIFEST", "--base", "MODEL", "--out",
                                "OUT_DIR", "--quiet"), "speechllm", runs_when_good=False),
    Command("train lm", ("train", "lm", "MANIFEST", "--out", "OUT_DIR")),
    Command("transcribe-hub", ("transcribe", "AUDIO", "--model", "HUB_ID", "--lang", "eng",
                               "--no-vad", "--output-dir", "OUT_DIR")),
    Command("download", ("download", "HUB_ID", "--lang", "eng")),
    Command("models", ("models",)),
]  # fmt: skip


# Each bad input: the slot it goes in, how to make it, and what the error must say.
def missing(tmp_path: Path, good: Path) -> Path:
    return tmp_path / "bad" / f"missing{good.suffix}"


def empty(tmp_path: Path, good: Path) -> Path:
    path = tmp_path / "bad" / f"empty{good.suffix}"
    path.write_bytes(b"")
    return path


def folder_for_file(tmp_path: Path, good: Path) -> Path:
    path = tmp_path / "bad" / f"folder{good.suffix}"
    path.mkdir()
    return path


def not_audio(tmp_path: Path, good: Path) -> Path:
    return make_text_renamed_wav(tmp_path / "bad")


def cut_short(tmp_path: Path, good: Path) -> Path:
    return make_flac_cut_at_30(tmp_path / "bad")


def not_utf8(tmp_path: Path, good: Path) -> Path:
    path = tmp_path / "bad" / f"latin1{good.suffix}"
    path.write_bytes("caf\xe9 cr\xe8me\n".encode("latin-1"))
    return path


def not_json(tmp_path: Path, good: Path) -> Path:
    path = tmp_path / "bad" / "broken.jsonl"
    path.write_text('{"audio": "a.flac", "text": \n')
    return path


def file_for_folder(tmp_path: Path, good: Path) -> Path:
    path = tmp_path / "bad" / "a_file"
    path.write_text("not a folder\n")
    return path


def under_a_file(tmp_path: Path, good: Path) -> Path:
    blocker = tmp_path / "bad" / "blocker"
    blocker.write_text("a file where a folder would have to be\n")
    return blocker / "inside" / good.name


def _damage(good: Path, tmp_path: Path, how) -> Path:
    copy = tmp_path / "bad" / "model"
    shutil.copytree(good, copy)
    damaged = [path for pattern in WEIGHTS for path in copy.rglob(pattern)]
    assert damaged, f"no weights in {good}"
    for path in damaged:
        data = path.read_bytes()
        path.write_bytes(how(data))
    return copy


def truncated_weights(tmp_path: Path, good: Path) -> Path:
    return _damage(good, tmp_path, lambda data: data[: len(data) // 2])


def corrupt_header(tmp_path: Path, good: Path) -> Path:
    return _damage(good, tmp_path, lambda data: b"\xff" * 16 + data[16:])


def not_cached(tmp_path: Path, good: str) -> str:
    return "org/absent"


def empty_revision(tmp_path: Path, good: str) -> str:
    return f"{good}@"


def adapter_not_cached(tmp_path: Path, good: str) -> str:
    return BASE_ONLY


BAD = [
    ("AUDIO", missing, "file not found"),
    ("AUDIO", empty, "empty file"),
    ("AUDIO", folder_for_file, "not a regular file"),
    ("AUDIO", not_audio, "not an audio file"),
    ("AUDIO", cut_short, "corrupt audio stream"),
    ("TEXT", missing, "transcript not found"),
    ("TEXT", empty, "transcript is empty"),
    ("TEXT", folder_for_file, "transcript is a folder"),
    ("TEXT", not_utf8, "not UTF-8"),
    ("MANIFEST", missing, "manifest not found"),
    ("MANIFEST", empty, "manifest is empty"),
    ("MANIFEST", folder_for_file, "manifest is a folder"),
    ("MANIFEST", not_json, "not valid JSON"),
    ("MODEL", missing, "model folder not found"),
    ("MODEL", file_for_folder, "a model is a folder"),
    ("MODEL", truncated_weights, "damaged"),
    ("MODEL", corrupt_header, "damaged"),
    ("OUT_FILE", folder_for_file, "is a folder"),
    ("OUT_FILE", under_a_file, "is a file"),
    ("OUT_DIR", file_for_folder, "is a file"),
    ("OUT_DIR", under_a_file, "is a file"),
    ("HUB_ID", not_cached, "not in the Hugging Face cache"),
    ("HUB_ID", empty_revision, "empty revision after @"),
    ("HUB_ID", adapter_not_cached, "adapter.eng.safetensors is not in the Hugging Face cache"),
]

CASES = [
    pytest.param(command, slot, make, problem, id=f"{command.name}-{slot}-{make.__name__}")
    for command in COMMANDS
    for slot, make, problem in BAD
    if slot in command.args and (slot != "MODEL" or command.model)
]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """One small folder of each model family the table loads."""
    import torch

    from polyspeech.ctc.conformer import ConformerCTC
    from polyspeech.ctc.folder import save_conformer
    from polyspeech.text.vocab import Vocabulary
    from tests.conftest import TINY_CONFORMER

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    ctc = ConformerCTC(TINY_CONFORMER)
    ctc.add_language("eng", len(Vocabulary.from_texts(["hello world"])))
    save_conformer(root / "ctc", ctc.eval(), {"eng": Vocabulary.from_texts(["hello world"])})
    # builtin:lid as a folder of its own: its base weights copied in (the builtin names
    # builtin:speechllm's encoder file instead, which a damaged copy of the folder would not reach)
    lid = root / "lid"
    shutil.copytree(BUILTIN["builtin:lid"], lid)
    config = json.loads((lid / "config.json").read_text())
    base = BUILTIN["builtin:lid"] / config.pop("base_weights")["path"]
    shutil.copyfile(base, lid / "model.safetensors")
    (lid / "config.json").write_text(json.dumps(config))
    return {"ctc": root / "ctc", "speechllm": build_mooer_folder(root / "speechllm"), "lid": lid}


HUB_ID = "org/ctc"
BASE_ONLY = "org/ctc-base"  # the same model, its adapter not in the cache


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory, models) -> Path:
    cache = tmp_path_factory.mktemp("hf-cache")
    write_hub_cache(cache, HUB_ID, models["ctc"])
    base = tmp_path_factory.mktemp("base") / "ctc"
    shutil.copytree(models["ctc"], base, ignore=shutil.ignore_patterns("adapter.*"))
    write_hub_cache(cache, BASE_ONLY, base)
    return cache


@pytest.fixture(autouse=True)
def offline(monkeypatch, hub_cache) -> None:
    use_offline_cache(monkeypatch, hub_cache)


def _good_slots(tmp_path: Path, command: Command) -> dict[str, Path | str]:
    good = tmp_path / "good"
    good.mkdir()
    soundfile.write(good / "a.flac", sine(220, 1.0, 16000), 16000)
    (good / "a.txt").write_text("hello world\n")
    record = {"audio": "a.flac", "text": "hello world", "lang": "eng", "duration": 1.0}
    (good / "m.jsonl").write_text(json.dumps(record) + "\n")
    (good / "kaldi").mkdir()
    (good / "kaldi" / "wav.scp").write_text(f"u1 {good / 'a.flac'}\n")
    (good / "kaldi" / "text").write_text("u1 hello world\n")
    return {
        "KALDI": good / "kaldi",
        "AUDIO": good / "a.flac",
        "TEXT": good / "a.txt",
        "MANIFEST": good / "m.jsonl",
        "OUT_FILE": tmp_path / "out" / command.out_file,
        "OUT_DIR": tmp_path / "out" / "folder",
        "HUB_ID": HUB_ID,
    }


def _command_line(command: Command, slots: dict[str, Path]) -> list[str]:
    return [str(slots.get(arg, arg)) for arg in command.args]


def _everything_under(folder: Path) -> set[Path]:
    return set(folder.rglob("*")) if folder.exists() else set()


@pytest.mark.parametrize(("command", "slot", "make", "problem"), CASES)
def test_a_bad_input_is_one_line_naming_it(tmp_path, cli, models, command, slot, make, problem):
    slots = _good_slots(tmp_path, command)
    if command.model:
        slots["MODEL"] = models[command.model]
    (tmp_path / "bad").mkdir()
    (tmp_path / "out").mkdir()
    slots[slot] = make(tmp_path, slots[slot])
    before = _everything_under(tmp_path / "out") | _everything_under(tmp_path / "bad")
    result = cli(*_command_line(command, slots))
    assert result.code == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("polyspeech: error: ")
    named = slots[slot] if slot != "MODEL" else tmp_path / "bad"
    assert str(named) in lines[0]
    assert problem in lines[0]
    assert _everything_under(tmp_path / "out") | _everything_under(tmp_path / "bad") == before


@pytest.mark.parametrize(
    "command", [c for c in COMMANDS if c.runs_when_good], ids=lambda command: command.name
)
def test_the_same_command_lines_run_when_every_input_is_good(tmp_path, cli, models, command):
    slots = _good_slots(tmp_path, command)
    if command.model:
        slots["MODEL"] = models[command.model]
    result = cli(*_command_line(command, slots))
    assert result.code == 0, result.stderr
    if "OUT_FILE" in command.args:
        assert slots["OUT_FILE"].stat().st_size > 0
    if "OUT_DIR" in command.args:
        assert any(slots["OUT_DIR"].iterdir())


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--batch-size", "0"], "Invalid value for '--batch-size'"),
        (["--device", "cuda:7"], "device 'cuda:7'"),
        (["--device", "tpu"], "device 'tpu'"),
        (["--output-format", "docx"], "unknown output format 'docx'"),
        (["--no-such-option"], "No such option: --no-such-option"),
    ],
)
def test_a_bad_option_is_one_line_naming_it(tmp_path, cli, models, args, problem):
    slots = _good_slots(tmp_path, COMMANDS[0])
    result = cli("transcribe", slots["AUDIO"], "--model", models["ctc"], *args)
    assert result.code == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and problem in result.stderr


def test_one_bad_file_among_several_does_not_stop_the_others(tmp_path, cli, models):
    slots = _good_slots(tmp_path, COMMANDS[0])
    second = tmp_path / "good" / "b.flac"
    soundfile.write(second, sine(330, 1.0, 16000), 16000)
    missing_file = tmp_path / "missing.flac"
    out = tmp_path / "out"
    result = cli(
        "transcribe", slots["AUDIO"], missing_file, second, "--model", models["ctc"],
        "--lang", "eng", "--output-dir", out, "--output-format", "json",
    )  # fmt: skip
    assert result.code == 2
    assert sorted(path.name for path in out.iterdir()) == ["a.json", "b.json"]
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"polyspeech: error: {missing_file}: file not found",
        "polyspeech: 1 of 3 files failed",
    ]
    identified = cli("identify", missing_file, slots["AUDIO"], "--model", models["lid"])
    assert identified.code == 2 and f"{slots['AUDIO']}: " in identified.stdout


@pytest.mark.parametrize("verb", ["ctc", "lid", "speechllm"])
def test_a_misspelt_training_setting_is_one_line_naming_it(tmp_path, cli, verb):
    slots = _good_slots(tmp_path, COMMANDS[0])
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"max_step": 10}))
    where = ["--dev", slots["MANIFEST"]] if verb != "speechllm" else ["--init", config]
    result = cli("train", verb, slots["MANIFEST"], *where, "--config", config, "--out",
                 tmp_path / "out")  # fmt: skip
    assert result.code == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"polyspeech: error: {config}: unknown ")
    assert line.endswith("config setting(s): max_step")
    assert not (tmp_path / "out").exists()
