"""Speech-LLM folders: MooER's release layout and our own, both loaded strictly.

MooER's release (it carries no configuration; sizes come from the weights' shapes)::

    paraformer-encoder.pth   SAN-M encoder state dict (FunASR names; a FunASR Paraformer
                             checkpoint's ``encoder.*`` part loads too)
    am.mvn                   CMVN of the LFR features
    adapter_project.pt       ``encoder_projector.linear1/linear2`` weights
    <lora>/                  a peft LoRA folder (adapter_config.json), optional
    <llm>/                   the Qwen2 folder (config.json, weights, tokenizer)

each at the top of the folder or up to two folders down (MooER's release has
``paraformer_encoder/``, ``asr_ast_mtl/lora_weights/`` and ``Qwen2-7B-Instruct/``). A release
with several task folders (``asr/``, ``ast/``, ``asr_ast_mtl/``, each an adapter and its LoRA)
loads the multitask ``asr_ast_mtl/``, as MooER's inference does; ``asr/`` or ``ast/`` alone is
a single-task model. The published releases hold no LLM (their ``Qwen2-7B-Instruct/`` is a
note): the one they need is resolved by id (:mod:`polyspeech.hub.mooer`) and read from its own
folder. Ours::

    polyspeech.json          family, encoder (type and sizes, or the hub id of a Whisper or
                             wav2vec2 model: ``{"type": "whisper", "model": ID, "revision": R}``),
                             adapter sizes, multitask, decoding
    encoder.safetensors + am.mvn  (a paraformer encoder) or encoder/ (a Hugging Face folder)
    adapter.safetensors, llm/, lora/ (optional)

Every missing or unexpected weight is an error that names it; pickles are read with
``weights_only=True`` only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from polyspeech.errors import InputError
from polyspeech.hub import ModelSource, mooer, resolve_model
from polyspeech.speechllm.adapter import AdapterConfig, FrameStackAdapter
from polyspeech.speechllm.encoders import (
    ParaformerSpeechEncoder,
    folder_encoder,
    hub_reference,
)
from polyspeech.speechllm.frontend import Cmvn, ParaformerFrontend, read_cmvn
from polyspeech.speechllm.model import DecodingConfig, SpeechLlm
from polyspeech.speechllm.sanm import SanmConfig, SanmEncoder
from polyspeech.weights import (
    check_model_folder,
    load_strict,
    loading_model,
    read_safetensors,
    read_torch_weights,
)

CONFIG = "polyspeech.json"
FAMILY = "speechllm"
MOOER_ENCODER = "paraformer-encoder.pth"


def is_speechllm_folder(folder: Path) -> bool:
    if (folder / CONFIG).is_file():
        return json.loads((folder / CONFIG).read_text()).get("family") == FAMILY
    return _find(folder, MOOER_ENCODER, required=False) is not None


def _places(folder: Path, name: str) -> list[Path]:
    """The files called ``name`` in ``folder`` and up to two levels down."""
    places = [folder / name, *folder.glob(f"*/{name}"), *folder.glob(f"*/*/{name}")]
    return [p for p in places if p.is_file()]


def _find(folder: Path, name: str, required: bool = True, is_dir: bool = False) -> Path | None:
    """``name`` in ``folder`` or up to two levels down; the folder holding it when ``is_dir``."""
    found = _places(folder, name)
    if is_dir:
        found = [p.parent for p in found]
    if len(found) > 1:
        listed = ", ".join(str(p) for p in found)
        raise InputError(f"{folder}: more than one {name} ({listed})")
    if not found and required:
        raise InputError(f"{folder}: no {name} (looked in the folder and two levels down)")
    return found[0] if found else None


def _strip(weights: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The weights under ``prefix`` without it, if any are; else all of them."""
    inside = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
    return inside or weights


def _llm(folder: Path, lora: Path | None, dtype: torch.dtype, merge_lora: bool, trainable: bool):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # a CLI's stderr is for its one-line errors
    config = json.loads((folder / "config.json").read_text())
    if not any(a.endswith("ForCausalLM") for a in config.get("architectures", [])):
        raise InputError(
            f"{folder / 'config.json'}: not a causal LM ({config.get('architectures')})"
        )
    tokenizer = AutoTokenizer.from_pretrained(folder)
    llm = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    if lora is not None:
        from peft import PeftModel

        llm = PeftModel.from_pretrained(llm, lora, is_trainable=trainable)
        _check_lora(llm, lora)
        if merge_lora:
            llm = llm.merge_and_unload()
    return llm.eval(), tokenizer


def _check_lora(llm, lora: Path) -> None:
    """peft only warns about LoRA weights it did not find or did not use: refuse them."""
    files = [lora / "adapter_model.safetensors", lora / "adapter_model.bin"]
    path = next((f for f in files if f.is_file()), None)
    if path is None:
        raise InputError(f"{lora}: no adapter_model.safetensors or adapter_model.bin")
    stored = set(
        read_safetensors(path) if path.suffix == ".safetensors" else read_torch_weights(path)
    )
    expected = {k.replace(".default.", ".") for k in llm.state_dict() if "lora_" in k}
    missing, unexpected = sorted(expected - stored), sorted(stored - expected)
    if missing or unexpected:
        problems = [f"missing {len(missing)}: {', '.join(missing[:3])}"] if missing else []
        if unexpected:
            problems.append(f"unexpected {len(unexpected)}: {', '.join(unexpected[:3])}")
        raise InputError(f"{path}: LoRA weights do not fit the LLM ({'; '.join(problems)})")


def _sanm(weights: dict[str, torch.Tensor], config: SanmConfig, source: Path) -> SanmEncoder:
    encoder = SanmEncoder(config)
    load_strict(encoder, weights, source)
    return encoder


def load_speechllm(
    model: str | os.PathLike | ModelSource,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    merge_lora: bool = False,
    attention_heads: int = 4,
    trainable: bool = False,
    llm: str | os.PathLike | ModelSource | None = None,
) -> SpeechLlm:
    """A speech LLM from our folder or MooER's release layout (see the module's notes):
    ``model`` is a folder, a hub id or a resolved :class:`ModelSource`.

    ``attention_heads`` applies to MooER's layout (its weights do not tell the heads apart);
    ``merge_lora`` folds the LoRA weights into the LLM for inference. ``llm`` (a folder or
    id) is the LLM of a MooER release; by default the release's own, else the one MooER's
    README names, resolved from the hub the release came from (Hugging Face for a folder).
    """
    source = model if isinstance(model, ModelSource) else resolve_model(model)
    folder = check_model_folder(source.folder)
    with loading_model(folder):
        if (folder / CONFIG).is_file():
            loaded = _load_ours(folder, dtype, merge_lora, trainable)
        else:
            loaded = _load_mooer(source, llm, dtype, merge_lora, attention_heads, trainable)
    loaded.source = source
    return loaded.to(device).eval()


def _mooer_adapter(folder: Path) -> tuple[Path, Path]:
    """The adapter_project.pt to load (the only one, or the multitask task folder's among
    several), and the folder its LoRA is in (that task folder's, or anywhere for the only one)."""
    found = _places(folder, "adapter_project.pt")
    if len(found) == 1:
        return found[0], folder
    chosen = [p for p in found if p.parent.name == mooer.MULTITASK]
    if len(chosen) != 1:
        listed = ", ".join(str(p) for p in found) or "none"
        raise InputError(
            f"{folder}: expected one adapter_project.pt, or one in {mooer.MULTITASK}/ among "
            f"task folders; found {listed}"
        )
    return chosen[0], chosen[0].parent


def _mooer_llm(source: ModelSource, llm, lora: Path | None) -> Path:
    """The folder of a MooER release's LLM: ``llm`` when given, else the release's own, else
    the one MooER's README names, resolved as a model of its own."""
    if llm is not None:
        return (llm if isinstance(llm, ModelSource) else resolve_model(llm)).folder
    folder = source.folder
    configs = [p for p in _places(folder, "config.json") if p.parent != lora]
    if len(configs) > 1:
        listed = ", ".join(str(p.parent) for p in configs)
        raise InputError(
            f"{folder}: expected one LLM folder (config.json + weights), found {listed}"
        )
    if configs:
        return configs[0].parent
    # Qwen2-7B-Instruct from the hub the release came from (ModelScope's for a ModelScope one)
    return resolve_model(mooer.LLM_IDS.get(source.kind, mooer.LLM_IDS["huggingface"])).folder


def _load_mooer(source, llm, dtype, merge_lora, attention_heads, trainable) -> SpeechLlm:
    folder = source.folder
    encoder_path = _find(folder, MOOER_ENCODER)
    # a whole FunASR Paraformer checkpoint names its encoder's weights encoder.*: only those
    encoder_weights = _strip(read_torch_weights(encoder_path), "encoder.")
    sanm_config = SanmConfig.from_state_dict(encoder_weights, attention_heads)
    cmvn = read_cmvn(_find(folder, "am.mvn"))
    frontend = ParaformerFrontend(cmvn, lfr_m=sanm_config.input_size // 80)
    encoder = ParaformerSpeechEncoder(frontend, _sanm(encoder_weights, sanm_config, encoder_path))
    adapter_path, lora_root = _mooer_adapter(folder)
    adapter_weights = _strip(read_torch_weights(adapter_path), "encoder_projector.")
    adapter = FrameStackAdapter(AdapterConfig.from_state_dict(adapter_weights, encoder.output_size))
    load_strict(adapter, adapter_weights, adapter_path)
    lora = _find(lora_root, "adapter_config.json", required=False, is_dir=True)
    llm_model, tokenizer = _llm(_mooer_llm(source, llm, lora), lora, dtype, merge_lora, trainable)
    _check_width(adapter, llm_model, adapter_path)
    task = adapter_path.parent.name
    single_task = task in mooer.TASKS and task != mooer.MULTITASK
    model = SpeechLlm(
        encoder.to(dtype), adapter.to(dtype), llm_model, tokenizer, multitask=not single_task
    )
    model.languages = ["cmn", "eng"]  # MooER: Chinese and English speech
    return model


def _check_width(adapter: FrameStackAdapter, llm, source: Path) -> None:
    width = llm.get_input_embeddings().weight.shape[1]
    if adapter.config.llm_size != width:
        raise InputError(
            f"{source}: the adapter gives {adapter.config.llm_size}-wide embeddings, "
            f"the LLM takes {width}"
        )


def _load_ours(folder: Path, dtype, merge_lora, trainable) -> SpeechLlm:
    config = json.loads((folder / CONFIG).read_text())
    if config.get("family") != FAMILY:
        raise InputError(f"{folder / CONFIG}: family {config.get('family')!r}, not {FAMILY!r}")
    encoder_config = config["encoder"]
    kind = encoder_config["type"]
    if kind == "paraformer":
        sanm_config = SanmConfig(**encoder_config["sanm"])
        frontend = ParaformerFrontend(
            read_cmvn(folder / "am.mvn"),
            encoder_config["num_mel_bins"],
            encoder_config["lfr_m"],
            encoder_config["lfr_n"],
        )
        path = folder / "encoder.safetensors"
        encoder = ParaformerSpeechEncoder(
            frontend, _sanm(read_safetensors(path), sanm_config, path)
        )
    elif "model" in encoder_config:  # a published encoder, named by its hub id
        encoder = folder_encoder(kind, encoder_config["model"], encoder_config.get("revision"))
    else:  # absolute: a missing encoder/ is a missing folder, never taken for a hub id
        encoder = folder_encoder(kind, (folder / "encoder").absolute())
    adapter = FrameStackAdapter(AdapterConfig(**config["adapter"]))
    load_strict(
        adapter, read_safetensors(folder / "adapter.safetensors"), folder / "adapter.safetensors"
    )
    lora = folder / "lora" if (folder / "lora" / "adapter_config.json").is_file() else None
    llm, tokenizer = _llm(folder / "llm", lora, dtype, merge_lora, trainable)
    _check_width(adapter, llm, folder / "adapter.safetensors")
    model = SpeechLlm(
        encoder.to(dtype),
        adapter.to(dtype),
        llm,
        tokenizer,
        multitask=config.get("multitask", True),
        decoding=DecodingConfig(**config.get("decoding", {})),
    )
    model.languages = config.get("languages", [])
    return model


def write_cmvn(cmvn: Cmvn, path: Path) -> None:
    """An am.mvn file (Kaldi nnet1 text) that :func:`read_cmvn` reads back exactly."""
    dim = len(cmvn.shift)

    def vector(values) -> str:
        return " ".join(repr(float(v)) for v in values)

    path.write_text(
        f"<Nnet>\n<Splice> {dim} {dim}\n[ 0 ]\n"
        f"<AddShift> {dim} {dim}\n<LearnRateCoef> 0 [ {vector(cmvn.shift)} ]\n"
        f"<Rescale> {dim} {dim}\n<LearnRateCoef> 0 [ {vector(cmvn.scale)} ]\n</Nnet>\n",
        encoding="utf-8",
    )


def save_speechllm(model: SpeechLlm, folder: str | os.PathLike) -> None:
    """Write ``model`` in our layout (LoRA kept apart from the LLM unless it was merged)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    encoder = model.encoder
    if isinstance(encoder, ParaformerSpeechEncoder):
        frontend = encoder.frontend
        encoder_config = {
            "type": "paraformer",
            "sanm": encoder.sanm.config.to_dict(),
            "num_mel_bins": frontend.num_mel_bins,
            "lfr_m": frontend.lfr_m,
            "lfr_n": frontend.lfr_n,
        }
        _save(encoder.sanm.state_dict(), folder / "encoder.safetensors")
        write_cmvn(frontend.cmvn, folder / "am.mvn")
    elif encoder.source.repo_id is not None:  # named by its hub id and revision, not copied
        encoder_config = {"type": encoder.kind, **hub_reference(encoder.source)}
    else:
        encoder_config = {"type": encoder.kind}
        encoder.save_pretrained(folder / "encoder")
    _save(model.adapter.state_dict(), folder / "adapter.safetensors")
    llm = model.llm
    if hasattr(llm, "peft_config"):
        llm.save_pretrained(folder / "lora")
        base = llm.get_base_model()
        weights = {
            k.replace(".base_layer.", "."): v
            for k, v in base.state_dict().items()
            if "lora_" not in k
        }
        base.save_pretrained(folder / "llm", state_dict=weights)
    else:
        llm.save_pretrained(folder / "llm")
    model.tokenizer.save_pretrained(folder / "llm")
    config = {
        "family": FAMILY,
        "encoder": encoder_config,
        "adapter": model.adapter.config.to_dict(),
        "multitask": model.multitask,
        "decoding": model.decoding.to_dict(),
        "languages": model.languages,
    }
    (folder / CONFIG).write_text(json.dumps(config, indent=2) + "\n")


def _save(weights: dict[str, torch.Tensor], path: Path) -> None:
    save_file({k: v.detach().contiguous() for k, v in weights.items()}, path)
