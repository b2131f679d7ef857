"""MooER's published checkpoints, and the LLM they name but do not hold.

What MooER publishes (MooER's README, github.com/MooreThreads/MooER, and the repositories'
file lists on huggingface.co/mtspeech; the ModelScope repositories under MooreThreadsSpeech
carry the same files)::

    mtspeech/MooER-MTL-5K  (modelscope:MooreThreadsSpeech/MooER-MTL-5K)
        paraformer_encoder/am.mvn, paraformer_encoder/paraformer-encoder.pth   (632 MB)
        asr/, ast/, asr_ast_mtl/: each adapter_project.pt (37.8 MB) and
            lora_weights/{adapter_config.json, adapter_model.bin (646 MB), README.md}
        Qwen2-7B-Instruct/README.md   a note only: "Please download Qwen2-7B-Instruct manually"
        README.md, configuration.json, LICENSE, assets/
    mtspeech/MooER-MTL-80K (modelscope:MooreThreadsSpeech/MooER-MTL-80K)
        the same with asr/ alone (adapter_model.bin 1.29 GB): speech recognition only

Every weight file is a pickle (.pth/.pt/.bin), none a safetensors. MooER's README has the LLM,
Qwen2-7B-Instruct (Hugging Face Qwen/Qwen2-7B-Instruct, ModelScope qwen/Qwen2-7B-Instruct),
put in the release's ``Qwen2-7B-Instruct/`` folder, and its inference defaults to the
multitask ``asr_ast_mtl/`` adapter and LoRA (``--task ast`` prompts it for both lines).
polyspeech resolves the LLM (:func:`llm_id`) as a model of its own, from the hub the MooER
release came from, and hands its folder to the loader: no weight is copied.
"""

from __future__ import annotations

from polyspeech.hub.source import ModelSource

ENCODER = "paraformer-encoder.pth"  # what makes a folder MooER's release layout
# Qwen2-7B-Instruct, the LLM of every MooER recognition and translation release, by hub
LLM_IDS = {
    "huggingface": "Qwen/Qwen2-7B-Instruct",
    "modelscope": "modelscope:qwen/Qwen2-7B-Instruct",
}
MULTITASK = "asr_ast_mtl"  # the task folder MooER's inference loads by default
TASKS = ("asr", "ast", MULTITASK)


def llm_id(source: ModelSource) -> str | None:
    """The id of the LLM the MooER release ``source`` needs and does not hold (so that
    ``polyspeech download`` of the release fetches it too); None for any other model."""
    if source.listing is not None:
        files = source.listing
    else:
        found = [p for p in source.folder.rglob("*") if p.is_file()]
        files = frozenset(p.relative_to(source.folder).as_posix() for p in found)
    names = {path.rpartition("/")[2] for path in files if path.count("/") <= 2}
    if ENCODER not in names or "config.json" in names:
        return None
    return LLM_IDS.get(source.kind, LLM_IDS["huggingface"])


def unused_files(paths: list[str]) -> set[str]:
    """The files of a MooER release the loader never reads: the single-task folders (``asr/``,
    ``ast/``) where the multitask one is there (1.4 GB of the 5K release)."""
    tops = {path.split("/", 1)[0] for path in paths if "/" in path}
    if MULTITASK not in tops or "paraformer_encoder" not in tops:
        return set()
    others = tuple(f"{task}/" for task in TASKS if task != MULTITASK)
    return {path for path in paths if path.startswith(others)}
