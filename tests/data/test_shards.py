"""WebDataset-style tar shards: written from a manifest, read back as a stream."""

import io
import json
import tarfile

import numpy as np
import pytest
import soundfile

from polyspeech.data.manifest import read_manifest
from polyspeech.data.shards import read_shards
from polyspeech.errors import InputError
from tests.conftest import sine


def test_a_manifest_round_trips_through_shards(tmp_path, cli):
    lines = []
    for i in range(5):
        soundfile.write(tmp_path / f"{i}.wav", sine(200 + 50 * i, 0.5 + 0.1 * i, 16000), 16000)
        lines.append(
            {
                "audio": f"{i}.wav",
                "text": f"line {i}",
                "lang": "eng",
                "duration": 0.5 + 0.1 * i,
                "id": f"u{i}",
            }
        )
    lines[1] |= {"translation": "ligne 1"}
    lines[2] |= {"offset": 0.1, "duration": 0.3}  # a span: written as FLAC
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    result = cli(
        "data", "to-shards", tmp_path / "m.jsonl", "--out", tmp_path / "shards", "--per-shard", "2"
    )
    assert result.code == 0 and "wrote 3 shards" in result.stdout
    shards = sorted((tmp_path / "shards").glob("*.tar"))
    assert [s.name for s in shards] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    samples = list(read_shards(shards))
    entries = list(read_manifest(tmp_path / "m.jsonl"))
    assert [s.entry.id for s in samples] == [e.id for e in entries]
    assert [s.entry.text for s in samples] == [e.text for e in entries]
    assert samples[1].entry.translation == "ligne 1" and samples[0].entry.translation is None
    assert samples[0].entry.audio.endswith("shard-000000.tar:u0.wav")
    for sample, entry in zip(samples, entries, strict=True):
        expected = soundfile.read(tmp_path / f"{entry.id[1:]}.wav", dtype="float32")[0]
        if entry.offset is not None:
            expected = expected[1600 : 1600 + 4800]
        assert np.abs(sample.audio() - expected).max() < 1e-4


def test_a_shard_with_an_unpaired_member_is_named(tmp_path):
    path = tmp_path / "bad.tar"
    with tarfile.open(path, "w") as archive:
        payload = json.dumps({"text": "a", "lang": "eng", "duration": 1.0}).encode()
        info = tarfile.TarInfo("k1.json")
        info.size = len(payload)
        archive.addfile(info, io.BytesIO(payload))
    with pytest.raises(InputError, match=r"bad\.tar: members without their pair .*k1"):
        list(read_shards([path]))
    (tmp_path / "not.tar").write_bytes(b"nothing")
    with pytest.raises(InputError, match=r"not\.tar: not a readable tar shard"):
        list(read_shards([tmp_path / "not.tar"]))
