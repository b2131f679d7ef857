"""`polyspeech evaluate` reports: several models side by side, Markdown, PNG, normalisation."""

import json
from pathlib import Path

from tests.test_cli import use_offline_cache, write_hub_cache

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "examples.jsonl"


def test_two_models_side_by_side_in_json_markdown_and_a_chart(tmp_path, cli, conformer_folder):
    tiny = str(conformer_folder[0])
    out = {name: tmp_path / "new" / name for name in ("r.json", "r.md", "r.png")}  # made
    result = cli(
        "evaluate", EXAMPLES, "--model", "builtin:ctc", "--model", tiny, "--output", out["r.json"],
        "--markdown", out["r.md"], "--plot", out["r.png"], "--quiet",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    report = json.loads(out["r.json"].read_text())
    assert report["task"] == "asr" and [m["model"] for m in report["models"]] == [
        "builtin:ctc",
        tiny,
    ]
    ctc, untrained = report["models"]
    assert len(ctc["per_lang"]) == 6 and set(untrained["per_lang"]) == {"cmn", "eng"}
    assert untrained["skipped"] == {"deu": 1, "fra": 1, "rus": 1, "spa": 1}
    assert ctc["per_lang"]["eng"]["cer"] < untrained["per_lang"]["eng"]["cer"]
    assert all(m["peak_memory_bytes"] > 50e6 for m in report["models"])
    table = out["r.md"].read_text()
    assert f"| CER % builtin:ctc | CER % {tiny} |" in table and "| deu | 1 |" in table
    assert "| deu | 1 | " in result.stdout and "peak memory" in result.stdout
    assert "decoding (builtin:ctc): beam search with the LM builtin:ctc-lm" in result.stdout
    assert (
        f"decoding ({tiny}): greedy" in result.stdout and ctc["decoding"] != untrained["decoding"]
    )
    assert out["r.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["r.json", "r.md", "r.png"]
    rows = [json.loads(line) for line in EXAMPLES.read_text().splitlines()]
    assert [u["id"] for u in ctc["utterances"]] == [row["id"] for row in rows]
    assert [u["reference"] for u in ctc["utterances"]] == [row["text"] for row in rows]
    eng = next(u for u in ctc["utterances"] if u["lang"] == "eng")
    assert eng["hypothesis"] and eng["cer"] == ctc["per_lang"]["eng"]["cer"]  # one line each


def test_normalisation_options_are_applied_and_printed(tmp_path, cli):
    plain, kept = tmp_path / "plain.json", tmp_path / "kept.json"
    assert cli("evaluate", EXAMPLES, "--json", plain, "--quiet").code == 0
    result = cli(
        "evaluate", EXAMPLES, "--keep-case", "--keep-punctuation", "--json", kept, "--quiet"
    )
    assert result.code == 0, result.stderr
    assert "normalisation: NFKC, case kept, punctuation kept" in result.stdout
    a, b = json.loads(plain.read_text()), json.loads(kept.read_text())
    assert a["normalization"].startswith("NFKC, case folding, punctuation and symbols removed")
    assert b["macro_cer"] > a["macro_cer"]  # CTC output has no case or punctuation
    twice = cli("evaluate", EXAMPLES, "--model", "builtin:ctc", "--model", "builtin:ctc")
    assert twice.code == 2 and "named twice" in twice.stderr
    wrong = cli("evaluate", EXAMPLES, "--task", "lid", "--keep-case")
    assert wrong.code == 2 and "are for recognition (asr)" in wrong.stderr


def test_builtin_ctc_is_scored_with_its_lms_unless_told_none(tmp_path, cli):
    runs = {}
    for name, extra in (("default", []), ("none", ["--lm", "none"])):
        out = tmp_path / f"{name}.json"
        result = cli("evaluate", EXAMPLES, "--json", out, "--quiet", *extra)
        assert result.code == 0, result.stderr
        runs[name] = (result.stdout, json.loads(out.read_text()))
    assert "decoding: beam search with the LM builtin:ctc-lm" in runs["default"][0]
    assert "decoding: greedy" in runs["none"][0] and runs["none"][1]["decoding"] == "greedy"
    assert runs["default"][1]["macro_cer"] < runs["none"][1]["macro_cer"]


def test_a_report_says_which_model_and_commit_it_scored(
    tmp_path, monkeypatch, cli, conformer_folder
):
    cache = tmp_path / "hf-cache"
    commit = write_hub_cache(cache, "org/tiny", conformer_folder[0])
    use_offline_cache(monkeypatch, cache)
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    result = cli("evaluate", EXAMPLES, "--model", "org/tiny", "--json", one, "--quiet")
    assert result.code == 0, result.stderr
    assert f"model org/tiny: org/tiny at {commit}" in result.stdout
    report = json.loads(one.read_text())
    assert report["model"] == "org/tiny"
    assert report["source"] == {
        "model": "org/tiny", "repo": "org/tiny", "revision": commit, "hub": "huggingface"
    }  # fmt: skip
    result = cli(
        "evaluate", EXAMPLES, "--model", f"org/tiny@{commit}", "--model", "builtin:ctc",
        "--json", two, "--quiet", "--lm", "none",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    tiny, builtin = json.loads(two.read_text())["models"]
    assert tiny["source"]["revision"] == commit and tiny["source"]["model"] == f"org/tiny@{commit}"
    assert builtin["source"] == {
        "model": "builtin:ctc", "repo": None, "revision": None, "hub": "builtin"
    }  # fmt: skip
