"""The Chinese/English parallel text and its speech corpus (speech translation)."""

import re
from pathlib import Path

import numpy as np

from polyspeech.data import synth
from polyspeech.data.manifest import read_manifest
from polyspeech.data.parallel import _SLOT, load_parallel_texts, pair_stream
from polyspeech.text import normalize_text


def test_the_parallel_text_parses_and_each_slot_is_one_to_one():
    texts = load_parallel_texts()
    assert len(texts.pairs) >= 400 and len(texts.templates) >= 80
    used = {slot for cmn, _ in texts.templates for slot in _SLOT.findall(cmn)}
    assert used == set(texts.slots)  # every slot used, every used slot filled
    for name, fillers in texts.slots.items():
        assert len({c for c, _ in fillers}) == len({e for _, e in fillers}) == len(fillers), name
    chinese = [c for c, _ in texts.pairs] + [c for f in texts.slots.values() for c, _ in f]
    assert not [c for c in chinese if re.search(r"[A-Za-z0-9]", c)]
    english = [e for _, e in texts.pairs] + [e for f in texts.slots.values() for _, e in f]
    assert not [e for e in english if re.search(r"[0-9]", e)]


def test_pairs_are_filled_on_both_sides_and_repeat_with_the_seed():
    def first(seed):
        stream = pair_stream(np.random.default_rng(seed), sentence_share=0.2)
        return [next(stream) for _ in range(200)]

    drawn = first(5)
    assert drawn == first(5) and drawn != first(6)
    assert {source for _, source in drawn} == {"sentence", "template"}
    for (cmn, eng), _ in drawn:
        assert "{" not in cmn + eng and eng[0].isupper()


def test_test_sentences_are_combinations_never_seen_in_training():
    plans = synth.plan_parallel(400, seed=1)
    by_split: dict[str, list] = {}
    for plan in plans:
        by_split.setdefault(plan.split, []).append(plan)
    assert {len([p for p in by_split[s] if p.lang == "cmn"]) for s in ("dev", "test")} == {40}
    chinese = {
        split: {normalize_text(p.text, "cmn") for p in ps if p.lang == "cmn"}
        for split, ps in by_split.items()
    }
    assert not chinese["train"] & (chinese["test"] | chinese["test_sentences"] | chinese["dev"])
    english = {s: {p.text for p in ps if p.lang == "eng"} for s, ps in by_split.items()}
    assert not english["train"] & (english["test"] | english["test_sentences"])
    assert {p.source for p in by_split["test"]} == {"template"}
    assert {p.source for p in by_split["test_sentences"]} == {"sentence"}
    test_cmn = [p.text for p in by_split["test"] if p.lang == "cmn"]
    assert len(set(test_cmn)) == len(test_cmn)
    assert all(p.translation for p in plans if p.lang == "cmn")
    assert not any(p.translation for p in plans if p.lang == "eng")
    assert {p.voice.partition("+")[2] for p in by_split["test"]} <= set(synth.TEST_VARIANTS)


def test_synth_parallel_writes_chinese_clips_with_their_english(tmp_path, cli):
    result = cli("data", "synth-parallel", "--out", tmp_path, "--per-lang", "10", "--jobs", "2")
    assert result.code == 0, result.stderr
    train = list(read_manifest(tmp_path / "train.jsonl"))
    assert {e.lang for e in train} == {"cmn", "eng"} and len(train) == 16
    assert all(bool(e.translation) == (e.lang == "cmn") for e in train)
    assert all(Path(e.audio).is_file() for e in train)
    assert (tmp_path / "test_sentences.jsonl").is_file()
