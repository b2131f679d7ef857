"""Processes of one accelerate run decide together."""

import os
import subprocess

from tests.conftest import two_process_launch

SCRIPT = """
import sys
from pathlib import Path
from accelerate import Accelerator
from polyspeech.distributed import agree
accelerator = Accelerator(cpu=True)
rank = accelerator.process_index
said = f"rank {rank}: {agree(accelerator, rank == 1)} {agree(accelerator, False)}"
Path(sys.argv[1], f"rank{rank}").write_text(said)
accelerator.end_training()
"""


def test_one_process_saying_so_is_enough_for_all(tmp_path):
    script = tmp_path / "agree.py"
    script.write_text(SCRIPT)
    launch = two_process_launch()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([*launch, str(script), str(tmp_path)], env=env, timeout=120, check=True)
    lines = sorted(path.read_text() for path in tmp_path.glob("rank*"))  # each its own file
    assert lines == ["rank 0: True False", "rank 1: True False"]
