import dataclasses
import json
import os
import subprocess

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from polyspeech.ctc import train as training
from polyspeech.ctc.folder import load_conformer_base, load_language_adapter
from polyspeech.ctc.model import CtcModel
from polyspeech.data.manifest import load_entry_audio, read_manifest, write_manifest
from polyspeech.errors import InputError
from polyspeech.text.vocab import Vocabulary, load_vocabularies
from tests.conftest import TINY_CONFORMER, two_process_launch

TINY = training.TrainConfig(
    max_steps=6,
    warmup_steps=2,
    eval_every=3,
    checkpoint_every=3,
    batch_seconds=12,
    dev_per_lang=2,
    model=TINY_CONFORMER,
)


def run(corpus, out, config=TINY, **kwargs):
    return training.train(
        [corpus / "train.jsonl"], corpus / "dev.jsonl", out, config, jobs=1, **kwargs
    )


def test_trains_a_loadable_model_and_resumes(tiny_corpus, tmp_path):
    summary = run(tiny_corpus, tmp_path, langs=["eng", "spa"])
    assert summary["steps"] == 6 and summary["langs"] == ["eng", "spa"]
    assert [entry["step"] for entry in summary["history"]] == [3, 6]
    assert set(summary["history"][-1]["dev_cer"]) == {"eng", "spa"}
    model = CtcModel(tmp_path / "model")
    assert model.languages == ["eng", "spa"]
    resumed = run(
        tiny_corpus,
        tmp_path,
        dataclasses.replace(TINY, max_steps=9),
        langs=["eng", "spa"],
        resume=True,
    )
    assert resumed["steps"] == 9
    assert [entry["step"] for entry in resumed["history"]] == [3, 6, 9]


def test_several_manifests_train_as_one_and_upsampled_frames_are_20_ms(tiny_corpus, tmp_path):
    entries = list(read_manifest(tiny_corpus / "train.jsonl"))
    parts = []
    for lang in ["eng", "spa"]:
        parts.append(tmp_path / lang / "train.jsonl")
        parts[-1].parent.mkdir()
        write_manifest(parts[-1], [entry for entry in entries if entry.lang == lang])
    config = dataclasses.replace(
        TINY, model=dataclasses.replace(TINY_CONFORMER, upsampling=2), max_steps=3
    )
    summary = training.train(parts, tiny_corpus / "dev.jsonl", tmp_path / "out", config, jobs=1)
    assert summary["langs"] == ["eng", "spa"]
    model = CtcModel(tmp_path / "out" / "model")
    assert abs(model.frame_shift - 0.02) < 1e-12


def test_loss_falls(tiny_corpus, tmp_path):
    losses = []
    config = dataclasses.replace(
        TINY, max_steps=60, eval_every=60, checkpoint_every=60, learning_rate=3e-3, warmup_steps=10
    )
    run(
        tiny_corpus, tmp_path, config, langs=["spa"], on_step=lambda step, loss: losses.append(loss)
    )
    assert sum(losses[-10:]) / 10 < 0.75 * sum(losses[:10]) / 10


@pytest.mark.parametrize("bf16", [False, True])
def test_bf16_runs_the_matrix_products_in_bfloat16_and_keeps_float32_weights(
    tiny_corpus, tmp_path, bf16
):
    products: set[torch.dtype] = set()

    def record(module, _inputs, output):
        if isinstance(module, torch.nn.Linear) and torch.is_grad_enabled():
            products.add(output.dtype)

    config = dataclasses.replace(TINY, max_steps=3, bf16=bf16, phoneme_weight=0.3, phoneme_layer=1)
    hook = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        summary = run(tiny_corpus, tmp_path, config, langs=["eng", "spa"])
    finally:
        hook.remove()
    assert products == {torch.bfloat16 if bf16 else torch.float32}
    assert 0 < summary["history"][-1]["loss"] < float("inf")
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["objective"]
    assert {value.dtype for value in state.values() if value.is_floating_point()} == {torch.float32}
    assert CtcModel(tmp_path / "model").languages == ["eng", "spa"]


def test_the_first_steps_cycle_over_a_few_clips_per_language(tiny_corpus, tmp_path, monkeypatch):
    batches: list[set[str]] = []
    collate = training._collate

    def recording_collate(group, device):
        if torch.is_grad_enabled():  # a training batch (dev CER runs without gradients)
            batches.append({u.text for u in group})
        return collate(group, device)

    monkeypatch.setattr(training, "_collate", recording_collate)
    config = dataclasses.replace(TINY, max_steps=12, start_steps=8, start_per_lang=2)
    run(tiny_corpus, tmp_path, config, langs=["eng", "spa"])
    assert len(batches) == 12
    first, later = set().union(*batches[:8]), set().union(*batches[8:])
    assert len(first) == 4  # two clips of each language, seen again and again
    assert later - first  # then the whole training set
    batches.clear()
    config = dataclasses.replace(config, start_loss=1e6, log_every=3)
    run(tiny_corpus, tmp_path / "by_loss", config, langs=["eng", "spa"])
    assert len(set().union(*batches[:3])) == 4 and set().union(*batches[3:]) - first


def test_phoneme_loss_and_sound_ties_train_and_resume_and_leave_the_saved_model_plain(
    tiny_corpus, tmp_path
):
    config = dataclasses.replace(
        TINY, phoneme_weight=0.3, phoneme_layer=1, sound_tied=("spa",), max_steps=3
    )
    run(tiny_corpus, tmp_path, config, langs=["eng", "spa"])
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["objective"]
    assert state["phoneme_head.weight"].shape[1] == TINY_CONFORMER.hidden_size
    assert state["model.sound_head.weight"].abs().sum() > 0  # the ties trained
    resumed = run(
        tiny_corpus, tmp_path, dataclasses.replace(config, max_steps=6), langs=["eng", "spa"]
    )
    assert resumed["steps"] == 6
    saved = load_file(tmp_path / "model" / "model.safetensors")
    assert not any("phoneme" in key or "sound" in key or "shared" in key for key in saved)
    assert CtcModel(tmp_path / "model").languages == ["eng", "spa"]


def test_spoken_forms_are_phonemes_without_stress_and_sound_ids_are_shared():
    assert training.spoken_form("Les amis arrivent.", "fra") == "lez ami aʁiv"
    vocabularies = {"cmn": Vocabulary.from_texts(["是事时"])}
    rows = training._sound_rows(vocabularies, ["cmn"])["cmn"]
    tokens = vocabularies["cmn"].tokens
    assert rows[: tokens.index("|") + 1] == [-1] * (tokens.index("|") + 1)
    sounds = dict(zip(tokens, rows, strict=True))
    assert sounds["是"] == sounds["事"] != sounds["时"]  # shi4, shi4, shi2


def test_a_language_espeak_cannot_speak_has_no_spoken_form():
    with pytest.raises(InputError, match="no espeak-ng voice for 'xyz'"):
        training.spoken_form("text", "xyz")


def test_adapter_training_leaves_the_base_and_old_languages_alone(tiny_corpus, tmp_path):
    run(tiny_corpus, tmp_path / "base", langs=["eng", "spa"])
    base = tmp_path / "base" / "model"
    summary = run(tiny_corpus, tmp_path / "fin", langs=["fin"], base=base)
    assert summary["langs"] == ["fin"]
    new = tmp_path / "fin" / "model"
    assert CtcModel(new).languages == ["eng", "fin", "spa"]
    for name in ["model.safetensors", "adapter.eng.safetensors", "adapter.spa.safetensors"]:
        before, after = load_file(base / name), load_file(new / name)
        assert before.keys() == after.keys()
        assert all(torch.equal(before[key], after[key]) for key in before), name
    old, updated = load_vocabularies(base / "vocab.json"), load_vocabularies(new / "vocab.json")
    assert updated["eng"] == old["eng"] and updated["spa"] == old["spa"]
    assert "ä" in updated["fin"].tokens or "ö" in updated["fin"].tokens


def test_a_language_of_the_base_continues_from_its_own_adapter(tiny_corpus, tmp_path):
    run(tiny_corpus, tmp_path / "base", langs=["eng", "spa"])
    base = tmp_path / "base" / "model"
    spanish = [e for e in read_manifest(tiny_corpus / "train.jsonl") if e.lang == "spa"]
    spanish[0] = dataclasses.replace(spanish[0], text=spanish[0].text + " ä")  # a new character
    write_manifest(tmp_path / "spa.jsonl", spanish)
    still = dataclasses.replace(TINY, max_steps=1, learning_rate=0.0)
    training.train(
        [tmp_path / "spa.jsonl"], tiny_corpus / "dev.jsonl", tmp_path / "more", still, base=base
    )
    new = tmp_path / "more" / "model"
    old, updated = load_vocabularies(base / "vocab.json"), load_vocabularies(new / "vocab.json")
    assert updated["spa"].tokens == (*old["spa"].tokens, "ä") and updated["eng"] == old["eng"]
    before, after = (
        load_file(base / "adapter.spa.safetensors"),
        load_file(new / "adapter.spa.safetensors"),
    )
    assert before.keys() == after.keys()
    for key in before:  # not one step of learning: the adapter and its old rows as they were
        kept = after[key][: len(old["spa"])] if key.startswith("head.") else after[key]
        assert torch.equal(before[key], kept), key
    with pytest.raises(InputError, match="one language at a time"):
        run(tiny_corpus, tmp_path / "two", langs=["eng", "fin"], base=base)


def test_a_whole_model_trains_further_from_its_own_weights(tiny_corpus, tmp_path):
    run(tiny_corpus, tmp_path / "base", langs=["eng", "spa"])
    start = tmp_path / "base" / "model"
    files = ["model.safetensors", "adapter.eng.safetensors", "adapter.spa.safetensors"]
    still = dataclasses.replace(TINY, max_steps=1, learning_rate=0.0)
    run(tiny_corpus, tmp_path / "still", still, langs=["eng", "spa"], init=start)
    for name in files:  # not one step of learning: every weight as it was, none started afresh
        before, after = load_file(start / name), load_file(tmp_path / "still" / "model" / name)
        assert before.keys() == after.keys()
        assert all(torch.equal(before[key], after[key]) for key in before), name
    summary = run(tiny_corpus, tmp_path / "more", langs=["eng", "spa"], init=start)
    assert summary["steps"] == 6 and summary["langs"] == ["eng", "spa"]
    new = tmp_path / "more" / "model"
    for name in files:  # the base and both adapters learn
        before, after = load_file(start / name), load_file(new / name)
        assert any(not torch.equal(before[key], after[key]) for key in before), name
    assert load_vocabularies(new / "vocab.json") == load_vocabularies(start / "vocab.json")
    assert CtcModel(new).languages == ["eng", "spa"]
    longer = dataclasses.replace(TINY, max_steps=9)
    resumed = run(
        tiny_corpus, tmp_path / "more", longer, langs=["eng", "spa"], init=start, resume=True
    )
    assert resumed["steps"] == 9 and [entry["step"] for entry in resumed["history"]] == [3, 6, 9]


def test_a_whole_model_needs_all_its_languages_and_no_new_characters(tiny_corpus, tmp_path):
    run(tiny_corpus, tmp_path / "base", langs=["eng", "spa"])
    start = tmp_path / "base" / "model"
    with pytest.raises(InputError, match="lack spa and add fin"):
        run(tiny_corpus, tmp_path / "one", langs=["eng", "fin"], init=start)
    clips = [e for e in read_manifest(tiny_corpus / "train.jsonl") if e.lang in ("eng", "spa")]
    last = max(i for i, clip in enumerate(clips) if clip.lang == "spa")
    clips[last] = dataclasses.replace(clips[last], text=clips[last].text + " ä")
    write_manifest(tmp_path / "new.jsonl", clips)
    with pytest.raises(InputError, match=r"spa training texts have 1 character\(s\).*\(ä\)"):
        training.train(
            [tmp_path / "new.jsonl"], tiny_corpus / "dev.jsonl", tmp_path / "n", TINY, init=start
        )
    with pytest.raises(InputError, match="not both"):
        run(tiny_corpus, tmp_path / "both", langs=["eng", "spa"], base=start, init=start)


def test_new_output_rows_start_from_the_old_languages_rows(tiny_corpus, tmp_path):
    run(tiny_corpus, tmp_path, langs=["eng", "spa"])
    base = tmp_path / "model"
    model, vocabularies = load_conformer_base(base)
    heads = {
        lang: load_language_adapter(base, model, lang, vocabularies[lang]).head
        for lang in ["eng", "spa"]
    }
    shared = sorted(set(vocabularies["eng"].characters) & set(vocabularies["spa"].characters))
    union = Vocabulary.from_texts([shared[0] + "ä"])  # ä: in neither old language
    model.tie_heads({"fin": list(range(len(union)))}, len(union))
    random_rows = model.shared_head.weight.detach().clone()
    training._start_from_old_heads(model, base, vocabularies, ["eng", "spa"], union)
    rows = model.shared_head.weight.detach()
    for token in ["<pad>", "|", shared[0]]:
        expected = (
            sum(
                heads[lang].weight[vocabularies[lang].tokens.index(token)].detach()
                for lang in ["eng", "spa"]
            )
            / 2
        )
        assert torch.allclose(rows[union.tokens.index(token)], expected, atol=1e-6), token
    assert torch.equal(rows[union.tokens.index("ä")], random_rows[union.tokens.index("ä")])


def test_bad_training_input_from_the_cli(tmp_path, cli):
    result = cli(
        "train",
        "ctc",
        tmp_path / "missing.jsonl",
        "--dev",
        tmp_path / "d.jsonl",
        "--out",
        tmp_path / "out",
    )
    assert result.code == 2 and "missing.jsonl: manifest not found" in result.stderr
    result = cli(
        "train",
        "adapter",
        tmp_path / "m.jsonl",
        "--dev",
        tmp_path / "d.jsonl",
        "--out",
        tmp_path / "out",
        "--base",
        tmp_path / "nobase",
        "--lang",
        "fin",
    )
    assert result.code == 2 and len(result.stderr.strip().splitlines()) == 1
    (tmp_path / "m.jsonl").write_text("")
    result = cli(
        "train",
        "ctc",
        tmp_path / "m.jsonl",
        "--dev",
        tmp_path / "d.jsonl",
        "--out",
        tmp_path / "out",
        "--init",
        tmp_path / "nomodel",
    )
    assert result.code == 2 and "nomodel" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_two_ddp_processes_train_in_step_and_stop_together(tiny_corpus, tmp_path):
    """DDP over two CPU processes (gloo) trains through the start set and on to a loadable
    model, and a time limit stops both processes at the same step."""
    config = dataclasses.replace(TINY, max_steps=4, start_steps=2, start_loss=1000.0, log_every=1)
    settings = dataclasses.asdict(config)
    (tmp_path / "c.json").write_text(json.dumps(settings))
    (tmp_path / "late.json").write_text(json.dumps(settings | {"max_minutes": 1e-6}))
    launch = [
        *two_process_launch(), "-m", "polyspeech", "train", "ctc", str(tiny_corpus / "train.jsonl"),
        "--dev", str(tiny_corpus / "dev.jsonl"), "--quiet",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name, steps in (("c", 4), ("late", 1)):
        out = tmp_path / name
        command = [*launch, "--config", str(tmp_path / f"{name}.json"), "--out", str(out)]
        subprocess.run(command, check=True, env=env, timeout=300)
        log = json.loads((out / "training_log.json").read_text())
        assert log["processes"] == 2 and log["steps"] == steps
        assert CtcModel(out / "model").languages == ["eng", "fin", "spa"]


def test_a_model_with_pitch_trains_loads_transcribes_and_takes_a_new_adapter(tiny_corpus, tmp_path):
    config = dataclasses.replace(
        TINY, model=dataclasses.replace(TINY_CONFORMER, pitch=True), max_steps=3
    )
    run(tiny_corpus, tmp_path / "base", config, langs=["eng", "spa"])
    base = tmp_path / "base" / "model"
    assert json.loads((base / "config.json").read_text())["pitch"] is True
    assert load_file(base / "model.safetensors")["pitch_projection.weight"].shape[1] == 3
    run(tiny_corpus, tmp_path / "fin", config, langs=["fin"], base=base)  # the base's features
    model = CtcModel(tmp_path / "fin" / "model")
    clip = next(e for e in read_manifest(tiny_corpus / "dev.jsonl") if e.lang == "fin")
    assert model.log_probs([load_entry_audio(clip)], "fin")[0].shape[1] == len(
        model.vocabulary("fin")
    )


def test_spec_augment_masks_bands_of_the_mel_bins_only():
    features = torch.randn(3, 200, 83)
    config = dataclasses.replace(TINY, freq_masks=20, freq_mask_size=40, time_masks=0)
    masked = training._spec_augment(features, torch.zeros(83), 80, config, np.random.default_rng(0))
    assert torch.equal(masked[..., 80:], features[..., 80:])
    assert (masked[..., :80] == 0).any()
