"""`polyspeech train speechllm`: what trains, checkpoints, resume, loud errors, DDP."""

import io
import json
import os
import subprocess
import sys
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import soundfile
import torch
from accelerate import Accelerator

from polyspeech.data.manifest import ManifestEntry
from polyspeech.errors import InputError
from polyspeech.speechllm.folder import load_speechllm
from polyspeech.speechllm.train import (
    SpeechLlmTrainConfig,
    _task_of,
    train_speechllm,
)
from tests.conftest import two_process_launch
from tests.speechllm.conftest import build_mooer_folder

PAIRS = [
    ("今天天气很好", "the weather is nice today"),
    ("我们明天去公园", "we go to the park tomorrow"),
    ("他喜欢喝茶", "he likes to drink tea"),
    ("商店九点开门", "the shop opens at nine"),
    ("我的猫很小", "my cat is small"),
    ("请关上门", "please close the door"),
    ("火车晚到了", "the train arrived late"),
    ("她在看书", "she is reading a book"),
]
CONFIG = SpeechLlmTrainConfig(
    max_steps=6,
    warmup_steps=2,
    learning_rate=3e-3,
    batch_size=4,
    eval_every=3,
    checkpoint_every=1,
    log_every=2,
    dev_size=2,
    tasks={"asr": 1.0, "ast": 1.0},
    lora_r=4,
    lora_dropout=0.0,  # no random numbers while training: runs repeat exactly
)


# espeak-ng's speech depends on what its process spoke before (polyspeech.tts.espeak): in a new
# process the corpus is the same whether this file runs alone or after other tests
SPEAK_SCRIPT = """
import json, sys
import numpy as np, soxr
from polyspeech.tts.espeak import get_espeak
engine = get_espeak()
for text in json.load(sys.stdin):
    audio = soxr.resample(engine.synthesize(text, "cmn"), engine.sample_rate, 16000)
    np.save(sys.stdout.buffer, audio.astype(np.float32))
"""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    texts = json.dumps([text for text, _ in PAIRS]).encode()
    spoken = subprocess.run(
        [sys.executable, "-c", SPEAK_SCRIPT], input=texts, capture_output=True, check=True
    )
    stream = io.BytesIO(spoken.stdout)
    lines = []
    for i, (text, translation) in enumerate(PAIRS):
        audio = np.load(stream)
        soundfile.write(folder / f"{i}.wav", audio, 16000)
        lines.append(
            {
                "audio": f"{i}.wav",
                "text": text,
                "translation": translation,
                "lang": "cmn",
                "duration": round(len(audio) / 16000, 3),
                "id": f"zh-{i}",
            }
        )
    (folder / "train.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (folder / "dev.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines[:2]))
    return folder


def test_only_the_adapter_and_lora_train_and_the_checkpoint_holds_only_them(
    corpus, mooer_folder, tmp_path
):
    # 3e-2: at CONFIG's 3e-3 the tiny model's dev loss fell by about 0.02 in 20 steps, no more
    # than what the number of threads or the tests run before it changed (it rose in one run)
    config = replace(CONFIG, max_steps=30, eval_every=10, checkpoint_every=30, learning_rate=3e-2)
    summary = train_speechllm(
        [corpus / "train.jsonl"], corpus / "dev.jsonl", mooer_folder, tmp_path / "run", config
    )
    assert summary["steps"] == 30
    dev = summary["history"][-1]
    assert {"asr_loss", "ast_loss", "cer_cmn", "bleu"} <= set(dev)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["trainable"]
    assert all("lora_" in name or name.startswith("adapter.") for name in state)
    assert any(name.startswith("adapter.") for name in state)
    base = load_speechllm(mooer_folder)
    total = sum(p.numel() for p in base.parameters())
    assert sum(v.numel() for v in state.values()) < 0.2 * total  # the tiny model's share
    # the released LoRA kept training (its weights moved), the encoder did not
    trained = load_speechllm(tmp_path / "run" / "model")
    for name, value in state.items():
        assert torch.equal(dict(trained.named_parameters())[name], value), name
    before = dict(base.named_parameters())
    assert all(
        torch.equal(p, before[n]) for n, p in trained.encoder.named_parameters(prefix="encoder")
    )
    moved = [n for n in state if "lora_" in n and not torch.equal(state[n], before[n])]
    assert moved
    # it learnt: the loss on the dev lines (two of the training lines) fell
    assert [h["step"] for h in summary["history"]] == [10, 20, 30]
    assert dev["asr_loss"] < summary["history"][0]["asr_loss"]


def test_a_kill_while_writing_a_checkpoint_keeps_the_last_one_and_resume_continues(
    corpus, mooer_folder, tmp_path, monkeypatch
):
    straight = train_speechllm(
        [corpus / "train.jsonl"], None, mooer_folder, tmp_path / "straight", CONFIG
    )
    assert straight["steps"] == 6
    real_save = torch.save
    calls = []

    def dying_save(state, target):  # the fourth checkpoint dies half written
        calls.append(target)
        if len(calls) == 4:
            open(target, "wb").write(b"half")
            raise KeyboardInterrupt
        real_save(state, target)

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        train_speechllm([corpus / "train.jsonl"], None, mooer_folder, tmp_path / "cut", CONFIG)
    monkeypatch.setattr(torch, "save", real_save)
    kept = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    assert kept["step"] == 3
    resumed = train_speechllm(
        [corpus / "train.jsonl"], None, mooer_folder, tmp_path / "cut", CONFIG, resume=True
    )
    assert resumed["steps"] == 6
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)["trainable"]
    b = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["trainable"]
    assert a.keys() == b.keys()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < 1e-6, worst


def test_a_bug_in_a_step_keeps_its_traceback_and_logs_the_step(
    corpus, mooer_folder, tmp_path, caplog
):
    from polyspeech.speechllm.model import SpeechLlm

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug, not the data's fault")

    with mock.patch.object(SpeechLlm, "forward", broken), pytest.raises(ZeroDivisionError):
        train_speechllm(
            [corpus / "train.jsonl"], None, mooer_folder, tmp_path / "run",
            replace(CONFIG, max_steps=1),
        )  # fmt: skip
    (record,) = [r for r in caplog.records if "failed on samples" in r.getMessage()]
    assert record.getMessage().startswith("step 1 failed on samples ") and record.exc_info


def test_a_failing_step_stops_with_its_step_and_samples(corpus, mooer_folder, tmp_path, cli):
    lines = [json.loads(line) for line in (corpus / "train.jsonl").read_text().splitlines()]
    lines = [line | {"audio": str(corpus / line["audio"])} for line in lines]
    lines[0] |= {"audio": str(tmp_path / "gone.wav"), "id": "zh-gone"}
    broken = tmp_path / "broken.jsonl"
    broken.write_text("".join(json.dumps(line) + "\n" for line in lines))
    config = replace(CONFIG, max_steps=2)
    with pytest.raises(InputError, match=r"step [12] failed on samples .*zh-gone"):
        train_speechllm([broken], None, mooer_folder, tmp_path / "run", config)
    (tmp_path / "c.json").write_text(json.dumps({"max_steps": 2, "batch_size": 8}))
    result = cli(
        "train", "speechllm", broken, "--base", mooer_folder, "--out", tmp_path / "cli",
        "--config", tmp_path / "c.json", "--quiet",
    )  # fmt: skip
    assert result.code == 2
    assert "failed on samples" in result.stderr and "zh-gone" in result.stderr


# plain SGD (no momentum, no weight decay): a step is linear in its gradient (AdamW divides by
# the root of the squared gradient, which turns a near-zero gradient's last bits into a whole
# step)
SGD_CONFIG = replace(CONFIG, max_steps=2, warmup_steps=1, checkpoint_every=2)
# two runs in the same two processes: with gradient sync, then under no_sync()
DDP_SCRIPT = """
import os, sys
from pathlib import Path
from unittest import mock
import torch
from accelerate import Accelerator
from tests.speechllm.test_train import sgd_steps
corpus, base, out = map(Path, sys.argv[1:4])
with mock.patch.object(Accelerator, "end_training", lambda self: None):  # group kept for the next
    synced = sgd_steps(corpus, base, out / "synced")
torch.save(synced, out / "synced" / f"gradients-{os.environ['RANK']}.pt")
unsynced = sgd_steps(corpus, base, out / "no_sync", synced=False)
torch.save(unsynced, out / "no_sync" / f"gradients-{os.environ['RANK']}.pt")
"""


def sgd_steps(corpus: Path, base: Path, out: Path, synced: bool = True) -> list[list[torch.Tensor]]:
    """``train_speechllm`` with SGD_CONFIG, plain SGD in AdamW's place and the model in float64;
    returns each step's gradients as the optimiser got them. ``synced`` false: every step runs
    under DDP's ``no_sync()``, so each process steps on the gradients of its own share of the
    batch. float64: in float32 the tiny random model's gradient was off its float64 value by
    1.4e-3, the batch's halves' mean by 4.4e-4 (9.2e-4 apart; 3.7e-5 on other audio); in
    float64 the two agreed to 4e-8."""
    gradients = []

    def in_float64(*args, **kwargs):
        return load_speechllm(*args, **kwargs).double()

    class RecordingSgd(torch.optim.SGD):
        def __init__(self, params, lr, betas=None, weight_decay=0.0):  # AdamW's betas unused
            super().__init__(params, lr=lr, weight_decay=weight_decay)

        def step(self, closure=None):
            gradients.append([p.grad.clone() for g in self.param_groups for p in g["params"]])
            return super().step(closure)

    with ExitStack() as patches:
        patches.enter_context(mock.patch.object(torch.optim, "AdamW", RecordingSgd))
        patches.enter_context(
            mock.patch(f"{train_speechllm.__module__}.load_speechllm", in_float64)
        )
        if not synced:
            no_sync = lambda self, model: model.no_sync()  # noqa: E731
            patches.enter_context(mock.patch.object(Accelerator, "accumulate", no_sync))
        train_speechllm([corpus / "train.jsonl"], None, base, out, SGD_CONFIG)
    return gradients


def relative_gap(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    """The largest, over tensors, of |a - b| / |b| (Euclidean norms)."""
    assert [x.shape for x in a] == [y.shape for y in b]
    return max(((x - y).norm() / y.norm()).item() for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def sgd_runs(corpus, tmp_path_factory):
    """SGD steps from one base: one process's (here), and two DDP processes' (launched: their
    run folders ``synced`` and ``no_sync``); returns the folder, the base and the first's
    gradients."""
    folder = tmp_path_factory.mktemp("sgd")
    base = build_mooer_folder(folder / "base", lora_dropout=0.0)  # no random numbers
    gradients = sgd_steps(corpus, base, folder / "one")
    (folder / "ddp.py").write_text(DDP_SCRIPT)
    root = str(Path(__file__).resolve().parents[2])  # where the script imports sgd_steps from
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    # --multi_gpu on a machine without GPUs: DDP over CPU processes with gloo
    args = [str(folder / "ddp.py"), str(corpus), str(base), str(folder)]
    subprocess.run([*two_process_launch(), *args], check=True, env=env, timeout=600)
    return folder, base, gradients


@pytest.mark.parametrize("run", ["synced", "no_sync"])
def test_two_ddp_processes_average_the_gradients_of_one_and_take_its_steps(sgd_runs, run):
    folder, base, one_gradients = sgd_runs
    log = json.loads((folder / run / "training_log.json").read_text())
    assert log["processes"] == 2 and log["steps"] == len(one_gradients) == 2
    ranks = [torch.load(folder / run / f"gradients-{r}.pt", weights_only=True) for r in (0, 1)]
    one = torch.load(folder / "one" / "checkpoint.pt", weights_only=True)["trainable"]
    two = torch.load(folder / run / "checkpoint.pt", weights_only=True)["trainable"]
    assert two.keys() == one.keys()
    start = dict(load_speechllm(base, trainable=True).named_parameters())
    moved = [one[k] - start[k].detach() for k in one]
    assert min(m.norm().item() for m in moved) > 0  # every tensor that trains moved
    # each step's gradient in each process against one process's over the whole batch, then
    # the weights the steps gave (their moves against one process's)
    gradient_gap = max(
        relative_gap(mine, whole)
        for rank in ranks
        for mine, whole in zip(rank, one_gradients, strict=True)
    )
    weight_gap = relative_gap([two[k] - start[k].detach() for k in one], moved)
    # equal up to sums in another order (measured 3.1e-7, 7.3e-8 at the first step, and 2.3e-7);
    # without the sync, each process steps on its own 2 samples' gradient (2.4 and 0.97)
    same = gradient_gap < 1e-5 and weight_gap < 1e-5
    assert same == (run == "synced"), (gradient_gap, weight_gap)


def test_two_batches_accumulated_take_the_step_of_one_twice_their_size(corpus, tmp_path):
    mooer_folder = build_mooer_folder(tmp_path / "base", lora_dropout=0.0)  # no random numbers
    whole = replace(CONFIG, max_steps=2, checkpoint_every=2, tasks={"asr": 1.0})
    halves = replace(whole, batch_size=2, gradient_accumulation=2)
    train = [corpus / "train.jsonl"]
    one = train_speechllm(train, None, mooer_folder, tmp_path / "one", whole)
    two = train_speechllm(train, None, mooer_folder, tmp_path / "two", halves)
    assert one["steps"] == two["steps"] == 2  # steps are optimiser steps
    a = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=True)
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 2
    start = dict(load_speechllm(mooer_folder, trainable=True).named_parameters())
    trained = a["trainable"].keys()
    worst = max((a["trainable"][k] - b["trainable"][k]).abs().max().item() for k in trained)
    moved = max((a["trainable"][k] - start[k]).abs().max().item() for k in trained)
    # equal up to float sums in another order (measured 7.5e-7; the steps moved 4.5e-3)
    assert worst < 1e-5 < 1e-3 < moved, (worst, moved)


def test_training_streams_tar_shards_and_resumes_in_the_stream(corpus, mooer_folder, tmp_path):
    from polyspeech.data.manifest import read_manifest
    from polyspeech.data.shards import write_shards
    from polyspeech.speechllm.train import global_batches

    shards = write_shards(read_manifest(corpus / "train.jsonl"), tmp_path / "shards", 3)
    assert len(shards) == 3
    stream = global_batches(shards, 4, seed=0)
    epoch = [next(stream), next(stream)]  # 8 samples: two batches an epoch
    assert sorted(s.entry.id for b in epoch for s in b) == [f"zh-{i}" for i in range(8)]
    config = replace(CONFIG, max_steps=4, checkpoint_every=2)
    summary = train_speechllm(shards, None, mooer_folder, tmp_path / "run", config)
    assert summary["steps"] == 4
    resumed = train_speechllm(
        shards, None, mooer_folder, tmp_path / "run", replace(config, max_steps=6), resume=True
    )
    assert resumed["steps"] == 6
    with pytest.raises(InputError, match="not both"):
        train_speechllm(
            [shards[0], corpus / "train.jsonl"], None, mooer_folder, tmp_path / "x", config
        )


def test_a_new_speech_llm_is_built_from_an_init_config_and_trained_whole(
    corpus, conformer_folder, tmp_path, cli
):
    folder, _ = conformer_folder
    init = {
        "encoder": str(folder),
        "adapter_stack": 3,
        "adapter_hidden": 24,
        "vocab_size": 300,
        "llm": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                "num_attention_heads": 4, "num_key_value_heads": 2},
    }  # fmt: skip
    (tmp_path / "init.json").write_text(json.dumps(init))
    config = {"max_steps": 4, "batch_size": 4, "learning_rate": 3e-3, "warmup_steps": 1,
              "train_lora": False, "train_llm": True, "checkpoint_every": 2,
              "tasks": {"asr": 1.0, "ast": 1.0}}  # fmt: skip
    (tmp_path / "train.json").write_text(json.dumps(config))
    args = ["train", "speechllm", corpus / "train.jsonl", "--init", tmp_path / "init.json",
            "--config", tmp_path / "train.json", "--out", tmp_path / "run", "--quiet"]  # fmt: skip
    assert cli(*args, "--dtype", "float16").code == 0
    base = load_speechllm(tmp_path / "run" / "base")
    trained = load_speechllm(tmp_path / "run" / "model")
    assert trained.adapter.config.stack == 3 and trained.languages == ["cmn", "eng"]
    assert set(trained.tokenizer.convert_ids_to_tokens(trained.tokenizer("今天")["input_ids"]))
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["trainable"]
    assert any(k.startswith("llm.") for k in state) and not any("lora_" in k for k in state)
    assert not any(k.startswith("encoder.") for k in state)
    moved = [
        (a - b).abs().max().item()
        for a, b in zip(base.llm.parameters(), trained.llm.parameters(), strict=True)
    ]
    assert min(moved) > 0  # every LLM weight trained
    kept = [(a - b).abs().max().item() for a, b in zip(
        base.encoder.parameters(), trained.encoder.parameters(), strict=True)]  # fmt: skip
    assert max(kept) == 0.0
    weights = tmp_path / "run" / "model" / "llm" / "model.safetensors"
    from safetensors.torch import load_file

    assert {v.dtype for v in load_file(weights).values()} == {torch.float16}
    resumed = cli(*args, "--resume")  # starts from the same base: nothing new is built
    assert resumed.code == 0 and "trained 4 steps" in resumed.stdout


def test_init_config_mistakes_are_one_line_errors(corpus, mooer_folder, tmp_path, cli):
    (tmp_path / "init.json").write_text(json.dumps({"adapter_stak": 3}))
    (tmp_path / "both.json").write_text(json.dumps({"train_llm": True}))
    run = ["train", "speechllm", corpus / "train.jsonl", "--out", tmp_path / "r", "--quiet"]
    bad = cli(*run, "--init", tmp_path / "init.json")
    assert bad.code == 2 and "unknown speech-LLM config setting(s): adapter_stak" in bad.stderr
    (tmp_path / "good.json").write_text("{}")
    both = cli(*run, "--init", tmp_path / "good.json", "--base", mooer_folder)
    assert both.code == 2 and "not both" in both.stderr
    neither = cli(*run)
    assert neither.code == 2 and "not both" in neither.stderr
    lora_too = cli(*run, "--base", mooer_folder, "--config", tmp_path / "both.json")
    assert lora_too.code == 2 and "set train_lora to false" in lora_too.stderr


def test_cached_encoder_states_train_as_the_encoder_itself(corpus, mooer_folder, tmp_path):
    plain = train_speechllm([corpus / "train.jsonl"], None, mooer_folder, tmp_path / "a", CONFIG)
    cached = train_speechllm(
        [corpus / "train.jsonl"], None, mooer_folder, tmp_path / "b",
        replace(CONFIG, cache_encoder_states=True),
    )  # fmt: skip
    assert plain["steps"] == cached["steps"] == 6  # three epochs: clips come back from the cache
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["trainable"]
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["trainable"]
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < 1e-4, worst
    assert (tmp_path / "b" / "model" / "encoder.safetensors").is_file()  # saved as it came


def test_tasks_are_drawn_per_sample_by_their_ratios():
    both = ManifestEntry("a.wav", "你好", "cmn", 1.0, translation="hello", id="a")
    plain = ManifestEntry("b.wav", "hello", "eng", 1.0, id="b")
    ratios = {"asr": 1.0, "ast": 2.0, "asr+ast": 1.0}
    drawn = [_task_of(both, ratios, np.random.default_rng([0, i])) for i in range(4000)]
    shares = {task: drawn.count(task) / len(drawn) for task in ratios}
    assert shares == pytest.approx({"asr": 0.25, "ast": 0.5, "asr+ast": 0.25}, abs=0.03)
    # a clip without a translation can only be transcribed
    assert {_task_of(plain, ratios, np.random.default_rng(i)) for i in range(50)} == {"asr"}
