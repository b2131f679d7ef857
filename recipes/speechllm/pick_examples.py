"""Copy held-out test clips of the speech-LLM corpus into examples/speechllm/: three Chinese
clips (with their English) and two English ones, grammar sentences never seen in training.

Run by `make speechllm-model` after training (its corpus is work/speechllm-corpus).
"""

import json
import shutil
from pathlib import Path

WANTED = {"cmn": 3, "eng": 2}
corpus, examples = Path("work/speechllm-corpus"), Path("examples/speechllm")
chosen: list[dict] = []
for line in (corpus / "test.jsonl").read_text(encoding="utf-8").splitlines():
    row = json.loads(line)
    taken = sum(r["lang"] == row["lang"] for r in chosen)
    if taken < WANTED[row["lang"]] and 2.5 < row["duration"] < 6:
        chosen.append(row)
examples.mkdir(parents=True, exist_ok=True)
with open(examples / "examples.jsonl", "w", encoding="utf-8") as manifest:
    for row in chosen:
        name = f"{row['id']}.flac"
        shutil.copy(corpus / row["audio"], examples / name)
        manifest.write(json.dumps({**row, "audio": name}, ensure_ascii=False) + "\n")
