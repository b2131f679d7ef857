"""Where a model's files are: a builtin name, a local folder, or a published model by its id.

``resolve_model(name)`` answers for every loader. A builtin name (``builtin:ctc``) is a folder
under ``polyspeech/assets``; an existing path is a local folder (it wins over an id of the same
spelling); ``ORG/NAME`` or ``ORG/NAME@REV`` is a Hugging Face Hub id
(:mod:`polyspeech.hub.huggingface`) and ``modelscope:ORG/NAME[@REV]`` a ModelScope one
(:mod:`polyspeech.hub.modelscope`). A published model arrives in its hub's standard cache: the
base files first, each per-language adapter (``adapter.<lang>.safetensors``) when its language
is used (:meth:`ModelSource.fetch`), or ahead of use with :func:`download`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from polyspeech.errors import InputError
from polyspeech.hub import mooer
from polyspeech.hub.source import (
    ADAPTER,
    ASSETS,
    BUILTIN,
    CONFIGS,
    HUB_ID,
    HUB_KINDS,
    MODELSCOPE,
    ModelSource,
    download_command,
    split_revision,
)


def resolve_model(name: str | os.PathLike, revision: str | None = None) -> ModelSource:
    """The model called ``name``: a builtin name, a local folder, a Hub id ``ORG/NAME[@REV]`` or
    ``modelscope:ORG/NAME[@REV]`` (``revision``: a branch, tag or commit, for ids only). A hub
    id's base files are downloaded into its cache unless they are there. Every problem (no such
    folder or id, a gated repository, an unknown revision, offline and not cached, a repository
    that holds no model polyspeech loads) is a one-line :class:`InputError`."""
    text = os.fspath(name)
    if text in BUILTIN:
        folder = BUILTIN[text]
        if not any((folder / config).is_file() for config in CONFIGS):
            raise InputError(f"{text}: the embedded model is not installed ({folder} is missing)")
        _no_revision(text, revision)
        return ModelSource(text, folder, "builtin")
    path = Path(text)
    if path.exists():
        from polyspeech.weights import check_model_folder

        _no_revision(text, revision)
        return ModelSource(text, check_model_folder(path), "folder")
    if text.startswith(MODELSCOPE):
        from polyspeech.hub.modelscope import resolve_modelscope

        return resolve_modelscope(*split_revision(text[len(MODELSCOPE) :], revision))
    repo_id, wanted = split_revision(text, revision)
    if HUB_ID.fullmatch(repo_id):
        from polyspeech.hub.huggingface import resolve_huggingface

        return resolve_huggingface(_hub_name(text, revision), repo_id, wanted)[0]
    raise InputError(
        f"{text}: model folder not found (nor a builtin name such as builtin:ctc, nor a Hub id "
        "ORG/NAME)"
    )


def download(
    name: str, languages: list[str] | None = None, revision: str | None = None
) -> tuple[ModelSource, list[tuple[str, int]]]:
    """Fetch the model ``name`` for use offline: its base files and the adapters of
    ``languages`` (ISO 639 codes or the model's own keys, matched as
    :func:`polyspeech.text.languages.model_language` matches them: ``cmn`` is mms-1b-all's
    ``cmn-script_simplified``). Returns its source and each file this call downloaded, with
    its size in bytes (nothing: all of it was in the cache already); a MooER release's LLM,
    which it names but does not hold, comes with it."""
    from polyspeech.text.languages import model_language, to_iso639_3

    for lang in languages or []:
        to_iso639_3(lang)  # a code that names no language is refused before any download
    started = time.time()
    repo_id, wanted = split_revision(str(name), revision)
    if str(name).startswith(MODELSCOPE):
        source = resolve_model(name, revision)
        # ModelScope's client does not say what it downloaded: files written during this call
        fetched = [
            (str(path.relative_to(source.folder)), path.stat().st_size)
            for path in sorted(source.folder.rglob("*"))
            if path.is_file() and path.stat().st_mtime >= started
        ]
    elif not Path(name).exists() and HUB_ID.fullmatch(repo_id):
        from polyspeech.hub.huggingface import resolve_huggingface

        source, fetched = resolve_huggingface(_hub_name(str(name), revision), repo_id, wanted)
    else:
        raise InputError(
            f"{name}: polyspeech download takes a Hub id (ORG/NAME, or modelscope:...)"
        )
    adapters = []
    if languages:
        available = _adapter_languages(source)
        if not available:
            raise InputError(
                f"{source.name}: no per-language adapters; --lang is for models such as "
                "facebook/mms-1b-all"
            )
        for lang in languages:
            code = model_language(lang, available, source.name)
            if code is None:
                raise InputError(
                    f"{source.name}: no adapter.{to_iso639_3(lang)}.safetensors (no adapter for "
                    "that language)"
                )
            adapters.append(f"adapter.{code}.safetensors")
    for adapter in adapters:
        if not (source.folder / adapter).is_file():
            fetched.append((adapter, source.fetch(adapter).stat().st_size))
    llm = mooer.llm_id(source)  # a MooER release's LLM, a repository of its own
    if llm is not None:
        fetched += [(f"{llm}: {file}", size) for file, size in download(llm)[1]]
    return source, fetched


def _adapter_languages(source: ModelSource) -> set[str]:
    """The languages of a model's per-language adapters: from its listing where one is known,
    else those of its nested ``vocab.json`` and of the adapters in its folder."""
    from polyspeech.text.vocab import load_vocabularies

    if source.listing is not None:
        files = source.listing
    else:
        files = frozenset(path.name for path in source.folder.iterdir())
    found = {match["lang"] for match in map(ADAPTER.fullmatch, files) if match}
    if source.listing is None and (source.folder / "vocab.json").is_file():
        found |= {lang for lang in load_vocabularies(source.folder / "vocab.json") if lang}
    return found


def _no_revision(name: str, revision: str | None) -> None:
    if revision:
        raise InputError(f"{name}: a revision is for Hub ids; a local or builtin model has none")


def _hub_name(text: str, revision: str | None) -> str:
    """The id as the user asked for it, a revision given apart written into it."""
    return text if "@" in text or not revision else f"{text}@{revision}"


__all__ = [
    "ADAPTER",
    "ASSETS",
    "BUILTIN",
    "CONFIGS",
    "HUB_ID",
    "HUB_KINDS",
    "MODELSCOPE",
    "ModelSource",
    "download",
    "download_command",
    "resolve_model",
    "split_revision",
]
