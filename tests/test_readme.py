"""README's quick start runs as written, each command on the examples, from a folder of its
own (what the commands write lands there)."""

import re
import shlex
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def quick_start() -> list[list[str]]:
    text = README.read_text()
    block = re.search(r"## Quick start\n.*?```sh\n(.*?)```", text, re.S)
    assert block, "README has a Quick start section with a sh block"
    commands = []
    for line in block.group(1).splitlines():
        words = shlex.split(line, comments=True)
        if words:
            assert words[0] == "polyspeech", line
            commands.append(words[1:])
    return commands


def test_the_quick_start_has_the_main_verbs():
    verbs = {command[0] for command in quick_start()}
    assert {"transcribe", "translate", "identify", "speak", "evaluate"} <= verbs


@pytest.mark.parametrize("command", quick_start(), ids=lambda c: " ".join(c[:2]))
def test_each_quick_start_command_runs_as_written(command, cli, tmp_path, monkeypatch):
    (tmp_path / "examples").symlink_to(README.parent / "examples")
    monkeypatch.chdir(tmp_path)
    result = cli(*command)
    assert result.code == 0, result.stderr
    written = [path for path in tmp_path.iterdir() if path.name != "examples"]
    assert result.stdout.strip() or any(path.stat().st_size for path in written)
