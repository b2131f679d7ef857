"""Training of the conformer CTC model: all languages at once, or one new language's adapter.

Data, model, optimiser, loop, evaluation, checkpoint, in that order. Batches mix languages:
every utterance runs through its own language's adapter and is scored over its own characters
(the output layers are tied while training, see :mod:`polyspeech.ctc.conformer`); batches that
take turns between languages kept twelve languages at the all-blank output for 1,000 steps, and
mixed batches over the whole corpus still sat there after 350 steps; cycling over a few clips
per language first (``start_steps``) ends that stage, and what is learnt carries over.
The loop runs under accelerate: one process on CPU, or ``accelerate launch`` for several
processes or GPUs. A checkpoint is written atomically every ``checkpoint_every`` steps;
``resume`` continues from it.
"""

from __future__ import annotations

import functools
import json
import logging
import multiprocessing
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from polyspeech.ctc.conformer import MODEL_TYPE, ConformerConfig, ConformerCTC, input_features
from polyspeech.ctc.decode import greedy_decode, spans_to_text
from polyspeech.ctc.folder import (
    adapter_path,
    load_conformer_base,
    load_language_adapter,
    save_conformer,
)
from polyspeech.ctc.wav2vec2 import return_freed_memory
from polyspeech.data.manifest import ManifestEntry, load_entry_audio, read_manifests
from polyspeech.distributed import agree
from polyspeech.errors import InputError, optional_module
from polyspeech.eval.metrics import cer
from polyspeech.files import make_folder, read_config
from polyspeech.hub import resolve_model
from polyspeech.text.normalize import normalize_text
from polyspeech.text.vocab import Vocabulary, load_vocabularies, save_vocabularies
from polyspeech.training import (
    load_checkpoint,
    make_accelerator,
    make_optimiser,
    save_checkpoint,
    write_training_log,
)
from polyspeech.tts.espeak import VOICES, get_espeak

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; the model's own dimensions are in :class:`ConformerConfig`."""

    max_steps: int = 20000
    max_minutes: float | None = None  # stop (and save) after this much training time
    learning_rate: float = 1.5e-3
    warmup_steps: int = 400
    weight_decay: float = 1e-3
    clip_norm: float = 5.0
    batch_seconds: float = 60.0  # padded audio per batch
    eval_every: int = 500
    log_every: int = 50  # log the mean training loss of the last this many steps
    checkpoint_every: int = 500
    dev_per_lang: int = 40
    seed: int = 0
    freq_masks: int = 2
    freq_mask_size: int = 12
    time_masks: int = 2
    time_mask_size: int = 20
    # The first ``start_steps`` steps cycle over the first ``start_per_lang`` clips of each
    # language: a small set seen again and again ends CTC's all-blank stage sooner. With
    # ``start_loss``, that start ends as soon as the mean loss of ``log_every`` steps is under it.
    start_steps: int = 0
    start_per_lang: int = 100
    start_loss: float | None = None
    # An auxiliary CTC loss on espeak-ng's phonemes of the text (one phoneme set for all
    # languages), read from the states after block ``phoneme_layer`` and added with this weight;
    # training from scratch only (it trains the shared base), and not part of the saved model.
    phoneme_weight: float = 0.0
    phoneme_layer: int = 3
    # Languages whose characters share output rows by their espeak-ng reading (see
    # ConformerCTC.tie_heads): a rare Chinese character then sounds like its homophones.
    # Not when a whole model trains further (``init``): its output layers train untied.
    sound_tied: tuple[str, ...] = ()
    # Matrix products in bfloat16 under autocast (weights, optimiser and losses stay float32);
    # off by default: on real batches of varying shapes slower than float32 (docs/guide.md).
    bf16: bool = False
    model: ConformerConfig = field(default_factory=ConformerConfig)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> TrainConfig:
        data = read_config(path, cls, "training config")
        model = ConformerConfig.from_dict(data.pop("model", {}))
        sound_tied = tuple(data.pop("sound_tied", ()))
        return cls(**data, sound_tied=sound_tied, model=model)


@dataclass
class _Utterance:
    lang: str
    features: np.ndarray  # (frames, mels) float16
    targets: list[int]  # ids in its language's vocabulary
    text: str
    phonemes: list[int] | None = None  # ids in the phoneme vocabulary


def _features_of(entry: ManifestEntry, model: ConformerConfig) -> np.ndarray:
    return input_features(load_entry_audio(entry), model).astype(np.float16)


def load_features(
    manifests: Sequence[Path],
    langs: set[str] | None,
    jobs: int,
    model: ConformerConfig,
    per_lang: int | None = None,
) -> list[tuple[ManifestEntry, np.ndarray]]:
    """The manifests' lines in ``langs`` (all if None; at most ``per_lang`` each) with the
    features a model of config ``model`` reads, computed in ``jobs`` processes."""
    entries: list[ManifestEntry] = []
    kept: dict[str, int] = {}
    for entry in read_manifests(manifests):
        wanted = langs is None or entry.lang in langs
        if wanted and (per_lang is None or kept.get(entry.lang, 0) < per_lang):
            entries.append(entry)
            kept[entry.lang] = kept.get(entry.lang, 0) + 1
    if not entries:
        names = ", ".join(str(manifest) for manifest in manifests)
        raise InputError(f"{names}: no utterances for {sorted(langs or [])}")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["polyspeech.ctc.train"])
    with context.Pool(jobs) as pool:
        features = pool.map(functools.partial(_features_of, model=model), entries, chunksize=16)
    return list(zip(entries, features, strict=True))


def _batches(
    utterances: list[_Utterance], batch_frames: int, rng: np.random.Generator
) -> list[list[int]]:
    """Batches of similar length, languages mixed, at most ``batch_frames`` padded frames each."""
    batches: list[list[int]] = []
    batch: list[int] = []
    order = rng.permutation(len(utterances))  # ties in length fall in a new order every epoch
    for index in sorted(order, key=lambda i: len(utterances[i].features)):
        longest = len(utterances[index].features)  # sorted: the newest is the longest
        if batch and longest * (len(batch) + 1) > batch_frames:
            batches.append(batch)
            batch = []
        batch.append(index)
    if batch:
        batches.append(batch)
    return [batches[i] for i in rng.permutation(len(batches))]


def _collate(utterances: list[_Utterance], device: torch.device):
    lengths = torch.tensor([len(u.features) for u in utterances])
    features = torch.zeros(len(utterances), int(lengths.max()), utterances[0].features.shape[1])
    for row, utterance in enumerate(utterances):
        features[row, : len(utterance.features)] = torch.from_numpy(
            utterance.features.astype(np.float32)
        )
    targets = [torch.tensor(u.targets, dtype=torch.long, device=device) for u in utterances]
    return features.to(device), lengths.to(device), targets


def _spec_augment(
    features: torch.Tensor,
    mean: torch.Tensor,
    mels: int,
    config: TrainConfig,
    rng: np.random.Generator,
) -> torch.Tensor:
    """Mask frequency bands (of the first ``mels`` columns, the mel bins) and time spans (of
    every column) with the mean (zero after normalisation)."""
    features = features.clone()
    frames = features.shape[1]
    for row in range(features.shape[0]):
        for _ in range(config.freq_masks):
            width = int(rng.integers(0, config.freq_mask_size + 1))
            start = int(rng.integers(0, max(1, mels - width)))
            features[row, :, start : start + width] = mean[start : start + width]
        for _ in range(config.time_masks):
            width = int(rng.integers(0, config.time_mask_size + 1))
            start = int(rng.integers(0, max(1, frames - width)))
            features[row, start : start + width] = mean
    return features


@torch.no_grad()
def evaluate_cer(
    model: ConformerCTC,
    utterances: list[_Utterance],
    vocabularies: dict[str, Vocabulary],
    device: torch.device,
) -> dict[str, float]:
    """Greedy CER per language on normalised text."""
    model.eval()
    refs: dict[str, list[str]] = {}
    hyps: dict[str, list[str]] = {}
    for utterance in utterances:
        features, lengths, _ = _collate([utterance], device)
        log_probs, _ = model(features, lengths, utterance.lang)
        text = spans_to_text(
            greedy_decode(log_probs[0].float().cpu().numpy(), vocabularies[utterance.lang])
        )
        refs.setdefault(utterance.lang, []).append(utterance.text)
        hyps.setdefault(utterance.lang, []).append(normalize_text(text, utterance.lang))
    model.train()
    return {lang: cer(refs[lang], hyps[lang]).rate for lang in sorted(refs)}


def _prepare(
    pairs: list[tuple[ManifestEntry, np.ndarray]], vocabularies: dict[str, Vocabulary]
) -> list[_Utterance]:
    utterances = []
    for entry, features in pairs:
        text = normalize_text(entry.text, entry.lang)
        targets = vocabularies[entry.lang].encode(text)
        utterances.append(_Utterance(entry.lang, features, targets, text))
    return utterances


def _espeak_voice(lang: str) -> str:
    if lang not in VOICES:
        raise InputError(f"no espeak-ng voice for {lang!r} (phonemes and sounds need one)")
    return VOICES[lang]


def spoken_form(text: str, lang: str) -> str:
    """espeak-ng's phonemes of ``text`` without stress marks, language switches and the
    links of unstressed words: what the phoneme loss and the sound ties compare."""
    ipa = get_espeak().phonemes(text, _espeak_voice(lang))
    return " ".join(re.sub(r"\([^)]*\)|[ˈˌ-]", "", ipa).split())


def _add_phonemes(utterances: list[_Utterance]) -> Vocabulary:
    """Give every utterance its phoneme ids; returns the phoneme vocabulary they share."""
    forms = [spoken_form(u.text, u.lang) for u in utterances]
    phonemes = Vocabulary.from_texts(forms)
    for utterance, form in zip(utterances, forms, strict=True):
        utterance.phonemes = phonemes.encode(form)
    return phonemes


def _sound_rows(vocabularies: dict[str, Vocabulary], langs: Sequence[str]) -> dict[str, list[int]]:
    """For each of ``langs``, the sound of every token (its reading alone; -1 for the blank,
    the specials and the word separator), as ids shared across those languages."""
    ids: dict[str, int] = {}
    rows = {}
    for lang in langs:
        characters = set(vocabularies[lang].characters)
        rows[lang] = [
            ids.setdefault(spoken_form(token, lang), len(ids)) if token in characters else -1
            for token in vocabularies[lang].tokens
        ]
    return rows


class _CtcLoss(torch.nn.Module):
    """The model and its training loss in one module, so that DDP sees the loss's whole graph.

    A mixed batch is scored one language at a time: each language's rows through its own output
    rows and softmax, so a row that is not Chinese never pays for the 2,000 Chinese characters
    (the equal one-softmax form, every row over all characters with the others' masked out, is
    slower; docs/guide.md, "Measurements behind the code's choices"). The loss is the mean over
    rows of each row's loss divided by its target length, as ``torch.nn.CTCLoss``'s default.
    With ``phoneme_head``, the phoneme loss over the states after block ``phoneme_layer`` is
    added with weight ``phoneme_weight``; ``forward`` returns the sum and the character loss.
    """

    def __init__(
        self,
        model: ConformerCTC,
        phoneme_head: torch.nn.Linear | None = None,
        phoneme_layer: int = 0,
        phoneme_weight: float = 0.0,
    ) -> None:
        super().__init__()
        self.model = model
        self.phoneme_head = phoneme_head
        self.phoneme_weight = phoneme_weight
        self._tapped: torch.Tensor | None = None  # the latest output of that block
        if phoneme_head is not None:
            model.blocks[phoneme_layer - 1].register_forward_hook(self._tap)

    def _tap(self, _block: torch.nn.Module, _inputs, output: torch.Tensor) -> None:
        self._tapped = output

    def forward(
        self,
        features: torch.Tensor,
        lengths: torch.Tensor,
        langs: list[str],
        targets: list[torch.Tensor],
        upsample: bool,
        phonemes: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        states, out_lengths = self.model.states(features, lengths, langs, upsample)
        total = states.new_zeros(())
        for lang in dict.fromkeys(langs):
            rows = [row for row, other in enumerate(langs) if other == lang]
            log_probs = self.model.head_logits(states[rows], lang).float().log_softmax(dim=-1)
            total = total + _ctc_sum(log_probs, [targets[row] for row in rows], out_lengths[rows])
        characters = total / len(langs)
        if self.phoneme_head is None or phonemes is None:
            return characters, characters
        log_probs = self.phoneme_head(self._tapped).float().log_softmax(dim=-1)
        encoder_lengths = self.model.output_lengths(lengths, upsample=False)
        spoken = _ctc_sum(log_probs, phonemes, encoder_lengths) / len(langs)
        return characters + self.phoneme_weight * spoken, characters


def _ctc_sum(
    log_probs: torch.Tensor, targets: list[torch.Tensor], lengths: torch.Tensor
) -> torch.Tensor:
    """The sum over rows of each row's CTC loss divided by its target length."""
    target_lengths = torch.tensor([len(target) for target in targets], device=log_probs.device)
    losses = torch.nn.functional.ctc_loss(
        log_probs.transpose(0, 1),
        torch.cat(targets),
        lengths,
        target_lengths,
        reduction="none",
        zero_infinity=True,
    )
    return (losses / target_lengths.clamp(min=1).to(losses)).sum()  # an empty target: its sum


def _start_from_old_heads(
    model: ConformerCTC,
    base: Path,
    vocabularies: dict[str, Vocabulary],
    old_langs: list[str],
    union: Vocabulary,
) -> None:
    """Start each new output row as the mean of the old languages' rows for the same token.

    Tokens the old languages share (the blank, ``|``, letters such as ``a``) then start out
    meaning what they meant to the frozen base; characters new to the model start at random.
    """
    rows: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    for lang in old_langs:
        head = load_language_adapter(base, model, lang, vocabularies[lang]).head
        for token, weight, bias in zip(
            vocabularies[lang].tokens, head.weight, head.bias, strict=True
        ):
            rows.setdefault(token, []).append((weight, bias))
    assert model.shared_head is not None
    with torch.no_grad():
        for index, token in enumerate(union.tokens):
            if token in rows:
                model.shared_head.weight[index] = torch.stack([w for w, _ in rows[token]]).mean(0)
                model.shared_head.bias[index] = torch.stack([b for _, b in rows[token]]).mean()


def _continue_base_adapters(
    model: ConformerCTC, base: Path, langs: list[str], index: dict[str, int]
) -> None:
    """Start the languages the base already has from their own adapters and output rows.

    Their vocabularies keep the base's ids first (see ``Vocabulary.extended``), so the saved
    adapter's rows are the first rows; characters new to the language start as
    :func:`_start_from_old_heads` left them.
    """
    assert model.shared_head is not None
    for lang in langs:
        known = load_vocabularies(base / "vocab.json")[lang]
        saved = load_language_adapter(base, model, lang, known)
        rows = torch.tensor([index[token] for token in known.tokens])
        with torch.no_grad():
            model.adapters[lang].layers.load_state_dict(saved.layers.state_dict())
            model.shared_head.weight[rows] = saved.head.weight.to(model.shared_head.weight)
            model.shared_head.bias[rows] = saved.head.bias.to(model.shared_head.bias)


def _conformer_folder(model: str | os.PathLike) -> tuple[Path, ConformerConfig]:
    """A model to train further (a folder, builtin name or Hub id), every adapter of it in its
    folder, and its dimensions; other kinds of model are an error."""
    source = resolve_model(model)
    folder = source.folder
    folder_config = json.loads(source.config_file().read_text())
    if folder_config.get("model_type") != MODEL_TYPE:
        raise InputError(
            f"{folder}: training further needs a {MODEL_TYPE} model, "
            f"not {folder_config.get('model_type')}"
        )
    for lang in load_vocabularies(folder / "vocab.json"):  # the old adapters are kept or trained
        if lang is not None and source.has_file(adapter_path(folder, lang).name):
            source.fetch(adapter_path(folder, lang).name)
    return folder, ConformerConfig.from_dict(folder_config)


def _check_init_languages(
    init: Path,
    vocabularies: dict[str, Vocabulary],
    train_pairs: list[tuple[ManifestEntry, np.ndarray]],
) -> None:
    """Training a whole model further needs clips of every one of its languages (the shared base
    changes under all of them) and no character its vocabularies lack (no new output rows)."""
    langs = {entry.lang for entry, _ in train_pairs}
    if langs != set(vocabularies):
        missing, foreign = sorted(set(vocabularies) - langs), sorted(langs - set(vocabularies))
        raise InputError(
            f"{init} has languages {', '.join(sorted(vocabularies))}; the training manifests "
            f"lack {', '.join(missing) or 'none'} and add {', '.join(foreign) or 'none'} "
            "(a new language: polyspeech train adapter)"
        )
    for lang, vocabulary in vocabularies.items():
        known = set(vocabulary.characters) | {" "}
        texts = (normalize_text(e.text, lang) for e, _ in train_pairs if e.lang == lang)
        new = sorted(set().union(*map(set, texts)) - known)
        if new:
            raise InputError(
                f"{init}: the {lang} training texts have {len(new)} character(s) its vocabulary "
                f"lacks ({''.join(new[:10])}); add them with polyspeech train adapter first"
            )


def train(
    train_manifests: Sequence[str | os.PathLike],
    dev_manifest: str | os.PathLike,
    out: str | os.PathLike,
    config: TrainConfig,
    langs: list[str] | None = None,
    base: str | os.PathLike | None = None,
    init: str | os.PathLike | None = None,
    resume: bool = False,
    jobs: int = 1,
    dtype: str = "float32",
    on_step: Callable[[int, float], None] | None = None,
) -> dict:
    """Train on ``train_manifests`` (read as one) and write a model folder to ``out``; returns
    the training log.

    Without ``base``: a new model, every language of the manifest (or ``langs``) trained together.
    With ``base``: the base model folder's weights stay frozen and only new adapters for ``langs``
    are trained (MMS's recipe); the output folder holds the base, its old adapters untouched, and
    the new ones, with their vocabularies appended to ``vocab.json``. A language the base already
    has continues from its own adapter and output layer (new characters get new rows).
    With ``init``: every weight of that model folder (base, adapters, output layers) trained
    further on all of its languages at once, output layers untied, vocabularies as they are.
    """
    if base is not None and init is not None:
        raise InputError("give a base (adapter training) or an init (the whole model), not both")
    model_config = config.model
    if base is not None:
        base, model_config = _conformer_folder(base)
    if init is not None:
        init, model_config = _conformer_folder(init)
    out = Path(out)
    checkpoint = out / "checkpoint.pt"
    accelerate = optional_module("accelerate", "training", "train")
    accelerator = make_accelerator(
        kwargs_handlers=[accelerate.DistributedDataParallelKwargs(find_unused_parameters=True)]
    )
    torch.manual_seed(config.seed)
    wanted = set(langs) if langs else None
    train_pairs = load_features([Path(m) for m in train_manifests], wanted, jobs, model_config)
    new_langs = sorted({entry.lang for entry, _ in train_pairs})
    # dev CER in the languages trained; others in the dev manifest are left out
    dev_pairs = load_features(
        [Path(dev_manifest)], set(new_langs), jobs, model_config, config.dev_per_lang
    )

    if base is not None:
        model, vocabularies = load_conformer_base(base)
        old_adapters = sorted(set(vocabularies) - set(new_langs))
        continued = sorted(set(vocabularies) & set(new_langs))
        if continued and len(new_langs) > 1:  # trained together, their shared rows would merge
            raise InputError(
                f"{base} already has {', '.join(continued)}: continue one language at a time"
            )
        for parameter in model.parameters():
            parameter.requires_grad_(False)
    elif init is not None:
        model, vocabularies = load_conformer_base(init)
        _check_init_languages(init, vocabularies, train_pairs)
        for lang, vocabulary in vocabularies.items():
            model.adapters[lang] = load_language_adapter(init, model, lang, vocabulary)
    else:
        model = ConformerCTC(config.model)
        vocabularies, old_adapters, continued = {}, [], []
    make_folder(out)  # once the data and the models it starts from are known to be readable
    vocab_file = out / "checkpoint.vocab.json"
    if resume and vocab_file.is_file():
        vocabularies.update({k: v for k, v in load_vocabularies(vocab_file).items() if k})
    else:
        for lang in new_langs:
            texts = [normalize_text(e.text, lang) for e, _ in train_pairs if e.lang == lang]
            known = vocabularies.get(lang)  # a language of the base: its ids stay, new ones follow
            vocabularies[lang] = known.extended(texts) if known else Vocabulary.from_texts(texts)
        save_vocabularies(vocab_file, {lang: vocabularies[lang] for lang in new_langs})
    if init is None:
        for lang in new_langs:
            model.add_language(lang, len(vocabularies[lang]))
        union = Vocabulary.from_texts(vocabularies[lang].characters for lang in new_langs)
        index = union.mapping()
        rows = {lang: [index[t] for t in vocabularies[lang].tokens] for lang in new_langs}
        tied = [lang for lang in new_langs if lang in config.sound_tied]
        model.tie_heads(rows, len(union), _sound_rows(vocabularies, tied) if tied else None)
    if base is not None and not resume:
        _start_from_old_heads(model, base, vocabularies, old_adapters, union)
        _continue_base_adapters(model, base, continued, index)
    if base is None and init is None:
        frames = np.concatenate([features for _, features in train_pairs]).astype(np.float32)
        model.feature_mean.copy_(torch.from_numpy(frames.mean(axis=0)))
        model.feature_std.copy_(torch.from_numpy(frames.std(axis=0) + 1e-5))
        del frames

    train_set = _prepare(train_pairs, vocabularies)
    start_set = [
        utterance
        for lang in new_langs
        for utterance in [u for u in train_set if u.lang == lang][: config.start_per_lang]
    ]
    dev_set = _prepare(dev_pairs, vocabularies)
    phoneme_head = None
    if config.phoneme_weight and base is None and init is None:
        phonemes = _add_phonemes(train_set)
        phoneme_head = torch.nn.Linear(config.model.hidden_size, len(phonemes))
        log.info("phoneme loss: %d phonemes, weight %s", len(phonemes), config.phoneme_weight)
    objective = _CtcLoss(model, phoneme_head, config.phoneme_layer, config.phoneme_weight)
    trainable = [p for p in objective.parameters() if p.requires_grad]
    optimizer, scheduler = make_optimiser(
        trainable, config.learning_rate, config.weight_decay, config.warmup_steps,
        config.max_steps, betas=(0.9, 0.98),
    )  # fmt: skip
    step, elapsed, history, start_done = 0, 0.0, [], False
    if resume and checkpoint.is_file():
        state = load_checkpoint(checkpoint, optimizer, scheduler)
        objective.load_state_dict(state["objective"])
        step, elapsed, history = state["step"], state["elapsed"], state["history"]
        start_done = state["start_done"]
        log.info("resumed at step %d", step)
    objective, optimizer = accelerator.prepare(objective, optimizer)
    inner: ConformerCTC = accelerator.unwrap_model(objective).model
    if base is not None:
        inner.eval()  # frozen base: no dropout in it; the new adapters are trained as they are
    else:
        inner.train()
    batch_frames = int(config.batch_seconds * 100)
    epoch = step  # a new shuffle on every resume as well
    started = time.monotonic() - elapsed
    recent_losses: list[float] = []
    done = False
    while not done:
        starting = step < config.start_steps and not start_done
        pool = start_set if starting else train_set
        rng = np.random.default_rng([config.seed, epoch])
        batches = _batches(pool, batch_frames, rng)
        # every process takes as many batches: one with a batch more would wait for the others
        usable = len(batches) - len(batches) % accelerator.num_processes
        if not usable:
            raise InputError(
                f"{len(batches)} batch(es) of training data for {accelerator.num_processes} "
                "processes: give more data or smaller batch_seconds"
            )
        shard = batches[accelerator.process_index : usable : accelerator.num_processes]
        for batch in shard:
            if pool is start_set and (start_done or step >= config.start_steps):
                start_done = True
                break  # on to the whole training set
            group = [pool[i] for i in batch]
            features, lengths, targets = _collate(group, accelerator.device)
            features = _spec_augment(
                features, inner.feature_mean, inner.config.num_mel_bins, config, rng
            )
            # the start at 40 ms, then 20 ms if the model upsamples (see ConformerCTC.states)
            upsample = pool is train_set
            phonemes = None
            if phoneme_head is not None:
                phonemes = [torch.tensor(u.phonemes, device=accelerator.device) for u in group]
            with torch.autocast(accelerator.device.type, torch.bfloat16, enabled=config.bf16):
                loss, characters = objective(
                    features, lengths, [u.lang for u in group], targets, upsample, phonemes
                )
            optimizer.zero_grad()
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(trainable, config.clip_norm)
            optimizer.step()
            scheduler.step()
            step += 1
            elapsed = time.monotonic() - started
            recent_losses.append(characters.item())  # what start_loss and the log compare
            if on_step is not None:
                on_step(step, recent_losses[-1])
            if step % config.log_every == 0:
                mean_loss = float(np.mean(recent_losses))
                log.info("step %d loss %.3f (%.2f min)", step, mean_loss, elapsed / 60)
                recent_losses.clear()
                # batches of varying shapes fragment the heap and slow a long run's later steps
                return_freed_memory()
                below = bool(config.start_loss) and mean_loss < config.start_loss
                if pool is start_set and agree(accelerator, below):
                    start_done = True
                    log.info("step %d: the start ends (loss under %s)", step, config.start_loss)
            out_of_time = config.max_minutes is not None and elapsed > 60 * config.max_minutes
            done = step >= config.max_steps or agree(accelerator, out_of_time)
            if step % config.eval_every == 0 or done:
                rates = evaluate_cer(inner, dev_set, vocabularies, accelerator.device)
                if base is not None:
                    inner.eval()
                history.append(
                    {
                        "step": step,
                        "minutes": round(elapsed / 60, 2),
                        "loss": characters.item(),
                        "dev_cer": rates,
                    }
                )
                log.info("step %d loss %.3f dev CER %s", step, characters.item(), rates)
            if accelerator.is_main_process and (step % config.checkpoint_every == 0 or done):
                save_checkpoint(
                    checkpoint, optimizer, scheduler, step, elapsed, history,
                    objective=accelerator.unwrap_model(objective).state_dict(),
                    start_done=start_done,
                )  # fmt: skip
            if done:
                break
        epoch += 1
    if accelerator.is_main_process:
        if base is not None:
            for lang in old_adapters:  # old languages keep exactly their own files
                inner.adapters[lang] = load_language_adapter(base, inner, lang, vocabularies[lang])
        inner.untie_heads()
        save_conformer(out / "model", inner, vocabularies, dtype=getattr(torch, dtype))
        summary = {
            "config": asdict(config),
            "langs": new_langs,
            "processes": accelerator.num_processes,
            "steps": step,
            "minutes": round(elapsed / 60, 2),
            "history": history,
        }
        write_training_log(out, summary)
    accelerator.end_training()  # a process left in the group can abort at exit (gloo threads)
    return summary if accelerator.is_main_process else {}
