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
