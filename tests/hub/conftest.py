"""A stand-in Hub on 127.0.0.1 with the real huggingface_hub client aimed at it, and a way to
publish a model folder made in a test to it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hub.hub_server import HubServer, running_hub_server, use_hub_server

hub_server = pytest.fixture(running_hub_server)


@pytest.fixture
def hub_cache(hub_server, tmp_path, monkeypatch) -> Path:
    """The Hugging Face cache folder (``HF_HUB_CACHE``), empty, the client online and aimed at
    ``hub_server``."""
    folder = tmp_path / "hf-cache"
    use_hub_server(monkeypatch, hub_server.url, folder)
    return folder


@pytest.fixture
def go_offline(monkeypatch):
    """Call it to turn ``HF_HUB_OFFLINE`` on, as the environment and as the imported client
    read it."""
    from huggingface_hub import constants

    def offline() -> None:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

    return offline


def publish(server: HubServer, repo_id: str, folder: Path, revision_name: str = "main") -> str:
    """Every file of ``folder`` as a new commit of ``repo_id``; returns the commit."""
    files = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()}
    return server.add_repo(repo_id, files, revision_name)
