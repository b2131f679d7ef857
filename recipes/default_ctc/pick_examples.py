"""Copy one held-out test clip per language from the default-model corpus into examples/.

Run by `make default-model` after training (its corpus is work/corpus).
"""

import json
import shutil
from pathlib import Path

LANGS = ["eng", "deu", "fra", "spa", "rus", "cmn"]
corpus, examples = Path("work/corpus"), Path("examples")
chosen: dict[str, dict] = {}
for line in (corpus / "test.jsonl").read_text(encoding="utf-8").splitlines():
    row = json.loads(line)
    if row["lang"] in LANGS and row["lang"] not in chosen and row["source"] == "sentence":
        if 2.5 < row["duration"] < 6:
            chosen[row["lang"]] = row
examples.mkdir(exist_ok=True)
with open(examples / "examples.jsonl", "w", encoding="utf-8") as manifest:
    for lang in LANGS:
        row = chosen[lang]
        shutil.copy(corpus / row["audio"], examples / f"{lang}.flac")
        row = {**row, "audio": f"{lang}.flac"}
        manifest.write(json.dumps(row, ensure_ascii=False) + "\n")
