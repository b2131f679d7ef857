"""Atomic file writing."""

import pytest


def test_a_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    import torch

    from polyspeech.files import atomic_torch_save

    path = tmp_path / "checkpoint.pt"
    atomic_torch_save({"step": 1}, path)

    def broken_save(state, target):
        open(target, "wb").write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        atomic_torch_save({"step": 2}, path)
    assert torch.load(path, weights_only=True) == {"step": 1}


def test_atomic_files_get_the_mode_open_would_give(tmp_path):
    """Not mkstemp's 0600: a chart, a transcript or a clip others are meant to read."""
    import numpy as np

    from polyspeech.audio.io import write_audio
    from polyspeech.files import atomic_text_file

    with atomic_text_file(tmp_path / "a.txt") as stream:
        stream.write("x")
    write_audio(tmp_path / "a.wav", np.zeros(1600, np.float32))
    with open(tmp_path / "plain.txt", "w") as stream:
        stream.write("x")
    expected = (tmp_path / "plain.txt").stat().st_mode & 0o777
    assert expected != 0o600  # the umask leaves others some access, or this shows nothing
    for name in ("a.txt", "a.wav"):
        assert (tmp_path / name).stat().st_mode & 0o777 == expected
