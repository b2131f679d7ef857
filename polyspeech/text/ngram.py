"""Character n-gram language models: interpolated Kneser-Ney from text, kept in ARPA files.

A sentence is its normalised characters with ``|`` for each space (the CTC word delimiter), so
the model speaks the same tokens as a CTC vocabulary and helps languages with or without
spaces alike. Estimation follows Chen and Goodman's interpolated Kneser-Ney with one discount
per order, ``D = n1 / (n1 + 2 n2)``: the highest order counts n-grams, the lower orders count
the distinct tokens seen before them (except after ``<s>``, which has nothing before it), and
the unigrams are interpolated with a uniform distribution over the vocabulary and ``<unk>``.
Written as ARPA (log10 probabilities and back-off weights), the back-off reading gives exactly
the interpolated probabilities, so KenLM and other ARPA readers score the same.
"""

from __future__ import annotations

import gzip
import math
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from polyspeech.errors import InputError
from polyspeech.files import open_text
from polyspeech.text.languages import is_written_without_spaces
from polyspeech.text.normalize import normalize_text
from polyspeech.text.vocab import BOS, EOS, UNK, WORD_DELIMITER

_NO_PROB = -99.0  # ARPA's "never predicted" (the <s> unigram)
_CUT_FROM = 3  # count cut-offs apply to n-grams of this many tokens and more


def sentence_tokens(text: str) -> list[str]:
    """The LM tokens of a normalised sentence: its characters, ``|`` for spaces."""
    return [WORD_DELIMITER if char == " " else char for char in text]


@dataclass(frozen=True)
class NgramLm:
    """log10 probabilities of seen n-grams and log10 back-off weights of their contexts."""

    order: int
    probs: dict[tuple[str, ...], float]
    backoffs: dict[tuple[str, ...], float]

    def score(self, context: tuple[str, ...], token: str) -> float:
        """log10 p(token | context); an unknown token scores as ``<unk>``."""
        if (token,) not in self.probs:
            token = UNK
        context = context[max(0, len(context) - self.order + 1) :] if self.order > 1 else ()
        penalty = 0.0
        while (*context, token) not in self.probs:
            penalty += self.backoffs.get(context, 0.0)
            context = context[1:]
        return penalty + self.probs[(*context, token)]

    def sentence_score(self, tokens: list[str]) -> float:
        """log10 probability of a whole sentence, ``</s>`` included."""
        history, total = (BOS,), 0.0
        for token in [*tokens, EOS]:
            total += self.score(history, token)
            history = (*history, token)
        return total


def estimate(sentences: Iterable[list[str]], order: int, min_count: int = 1) -> NgramLm:
    """An interpolated Kneser-Ney model of ``order`` from token lists. With ``min_count`` above
    1, n-grams of three tokens or more seen fewer times are left out (count cut-offs): their
    share of the probability goes to the back-off, so the model stays normalised."""
    if order < 1:
        raise InputError(f"an n-gram order must be at least 1, not {order}")
    if min_count < 1:
        raise InputError(f"a minimum n-gram count must be at least 1, not {min_count}")
    raw: list[Counter] = [Counter() for _ in range(order + 1)]  # raw[k]: k-gram counts
    for sentence in sentences:
        padded = (BOS, *sentence, EOS)
        for end in range(1, len(padded)):
            for size in range(1, order + 1):
                if end - size + 1 < 0:
                    break
                raw[size][padded[end - size + 1 : end + 1]] += 1
    if not raw[1]:
        raise InputError("no text to estimate a language model from")
    counts: list[Counter] = [Counter() for _ in range(order + 1)]
    counts[order] = raw[order]
    for size in range(1, order):
        left: Counter = Counter(gram[1:] for gram in raw[size + 1])  # distinct left neighbours
        counts[size] = Counter(
            {gram: raw[size][gram] if gram[0] == BOS else left[gram] for gram in raw[size]}
        )
    probs: dict[tuple[str, ...], float] = {}
    backoffs: dict[tuple[str, ...], float] = {}
    lower: dict[tuple[str, ...], float] = {}  # natural probabilities of the previous order
    for size in range(1, order + 1):
        discount = _discount(counts[size])
        totals: Counter = Counter()
        kinds: Counter = Counter()
        cut: Counter = Counter()  # the counts left out, per context
        kept: Counter = Counter()
        for gram, count in counts[size].items():
            totals[gram[:-1]] += count
            if size >= _CUT_FROM and raw[size][gram] < min_count:
                cut[gram[:-1]] += count
            else:
                kinds[gram[:-1]] += 1
                kept[gram] = count
        counts[size] = kept
        weights = {h: (discount * kinds[h] + cut[h]) / totals[h] for h in totals}
        current: dict[tuple[str, ...], float] = {}
        if size == 1:
            vocabulary = [*sorted(counts[1]), (UNK,)]
            uniform = weights[()] / len(vocabulary)
            for (token,) in vocabulary:
                seen = max(counts[1][(token,)] - discount, 0.0) / totals[()]
                current[(token,)] = seen + uniform
        else:
            for gram, count in counts[size].items():
                context = gram[:-1]
                current[gram] = (count - discount) / totals[context] + weights[context] * lower[
                    gram[1:]
                ]
            for context, weight in weights.items():
                if kinds[context]:  # (a context whose continuations were all cut backs off fully)
                    backoffs[context] = math.log10(weight)
        for gram, prob in current.items():
            probs[gram] = math.log10(prob)
        lower = current
    probs[(BOS,)] = _NO_PROB
    return NgramLm(order, probs, backoffs)


def _discount(counts: Counter) -> float:
    """Ney's estimate from the counts of counts, kept inside (0.1, 0.9)."""
    of = Counter(counts.values())
    ones, twos = of[1], of[2]
    if ones == 0:
        return 0.5
    return min(0.9, max(0.1, ones / (ones + 2 * twos)))


def _open(path: Path, mode: str, compressed: bool):
    if compressed:
        return gzip.open(path, mode + "t", encoding="utf-8")
    return path.open(mode, encoding="utf-8")


def write_arpa(lm: NgramLm, path: str | os.PathLike) -> None:
    """Write ``lm`` as ARPA (gzip-compressed when the name ends in ``.gz``), atomically."""
    path = Path(path)
    by_order: dict[int, list[tuple[str, ...]]] = defaultdict(list)
    for gram in lm.probs:
        by_order[len(gram)].append(gram)
    partial = path.with_name(path.name + ".partial")
    with _open(partial, "w", path.suffix == ".gz") as out:
        out.write("\\data\\\n")
        for size in range(1, lm.order + 1):
            out.write(f"ngram {size}={len(by_order[size])}\n")
        for size in range(1, lm.order + 1):
            out.write(f"\n\\{size}-grams:\n")
            for gram in sorted(by_order[size]):
                line = f"{lm.probs[gram]:.6f}\t{' '.join(gram)}"
                if gram in lm.backoffs:
                    line += f"\t{lm.backoffs[gram]:.6f}"
                out.write(line + "\n")
        out.write("\n\\end\\\n")
    os.replace(partial, path)


def _unigrams(path: Path) -> Iterator[str]:
    """The words of an ARPA file's unigram section, in file order, ``<s>``, ``</s>`` and
    ``<unk>`` left out, read lazily."""
    in_unigrams = False
    try:
        with _open(path, "r", path.suffix == ".gz") as lines:
            for line in lines:
                line = line.strip()
                if line == "\\1-grams:":
                    in_unigrams = True
                elif in_unigrams and (not line or line.startswith("\\")):
                    return
                elif in_unigrams:
                    fields = line.split()
                    if len(fields) > 1 and fields[1] not in (BOS, EOS, UNK):
                        yield fields[1]
    except (OSError, UnicodeDecodeError, EOFError) as error:
        raise InputError(f"{path}: cannot read the language model ({error})") from None
    if not in_unigrams:
        raise InputError(f"{path}: not an ARPA language model (no 1-grams section)")


def is_character_arpa(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an ARPA file (``.arpa`` or ``.arpa.gz``) whose unigrams are single
    characters (and ``|``); it reads up to the first longer word, so a large word LM costs a few
    lines."""
    path = Path(path)
    if not path.name.endswith((".arpa", ".arpa.gz")):
        return False
    return all(len(word) == 1 for word in _unigrams(path))


def arpa_words(path: str | os.PathLike) -> list[str]:
    """The words of an ARPA file (plain or ``.gz``): its unigrams but the sentence marks and
    ``<unk>``."""
    return list(_unigrams(Path(path)))


def read_arpa(path: str | os.PathLike) -> NgramLm:
    """Read an ARPA file (plain or ``.gz``); a malformed one is an :class:`InputError`."""
    path = Path(path)
    probs: dict[tuple[str, ...], float] = {}
    backoffs: dict[tuple[str, ...], float] = {}
    order, size = 0, 0
    try:
        with _open(path, "r", path.suffix == ".gz") as lines:
            for number, line in enumerate(lines, 1):
                line = line.strip()
                if not line or line in ("\\data\\", "\\end\\"):
                    continue
                if line.startswith("ngram "):
                    order = max(order, int(line[6:].split("=")[0]))
                elif line.startswith("\\") and line.endswith("-grams:"):
                    size = int(line[1:].split("-")[0])
                elif size:
                    fields = line.split("\t") if "\t" in line else line.split()
                    gram = tuple(fields[1].split()) if "\t" in line else tuple(fields[1 : 1 + size])
                    if len(gram) != size:
                        raise ValueError(f"line {number}: expected a {size}-gram")
                    probs[gram] = float(fields[0])
                    if len(fields) > (2 if "\t" in line else 1 + size):
                        backoffs[gram] = float(fields[-1])
    except (OSError, UnicodeDecodeError, ValueError, IndexError, EOFError) as error:
        raise InputError(f"{path}: not a readable ARPA language model ({error})") from None
    if not order or not probs:
        raise InputError(f"{path}: not an ARPA language model (no n-grams)")
    if (UNK,) not in probs:
        probs[(UNK,)] = min(p for g, p in probs.items() if len(g) == 1 and p > _NO_PROB)
    return NgramLm(order, probs, backoffs)


def lexicon_lines(lang: str, per_line: int = 8) -> list[list[str]]:
    """wordfreq's frequent words of ``lang`` (the list the corpus builder draws from), each once,
    in lines of ``per_line`` words in a fixed shuffled order: spelling knowledge beyond the
    training sentences. Empty for a language wordfreq has no list for."""
    from polyspeech.data.texts import frequent_words

    words = [normalize_text(word, lang) for word in frequent_words(lang)]
    words = [word for word in words if word]
    order = np.random.default_rng(0).permutation(len(words))
    joiner = "" if is_written_without_spaces(lang) else " "
    return [
        sentence_tokens(joiner.join(words[i] for i in order[start : start + per_line]))
        for start in range(0, len(words), per_line)
    ]


def text_file_lines(path: str | os.PathLike, lang: str) -> list[list[str]]:
    """The normalised lines of a UTF-8 text file in ``lang`` (blank ones left out)."""
    with open_text(path, "text file") as stream:
        lines = [normalize_text(line, lang) for line in stream]
    return [sentence_tokens(line) for line in lines if line]


def train_from_manifests(
    manifests: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    order: int,
    langs: list[str] | None,
    lexicon: bool = False,
    text: str | os.PathLike | None = None,
    min_count: int = 1,
) -> dict[str, int]:
    """One character n-gram per language of ``manifests``, from their normalised texts (with
    ``lexicon`` also :func:`lexicon_lines`; with ``text``, the lines of that file, for the one
    language of ``langs``), n-grams of three or more characters seen fewer than ``min_count``
    times left out, written as ``out/<lang>.arpa.gz``; returns the number of lines each was
    estimated from."""
    from polyspeech.data.manifest import read_manifests

    if text is not None and (langs is None or len(langs) != 1):
        raise InputError(f"{text}: more text is for one language; name it with --langs")
    texts: dict[str, list[list[str]]] = defaultdict(list)
    for entry in read_manifests(manifests):
        if langs is None or entry.lang in langs:
            texts[entry.lang].append(sentence_tokens(normalize_text(entry.text, entry.lang)))
    if not texts:
        names = ", ".join(str(manifest) for manifest in manifests)
        raise InputError(f"{names}: no lines in the languages asked for")
    if text is not None:
        texts[langs[0]].extend(text_file_lines(text, langs[0]))
    Path(out).mkdir(parents=True, exist_ok=True)
    for lang, sentences in sorted(texts.items()):
        if lexicon:
            sentences.extend(lexicon_lines(lang))
        write_arpa(estimate(sentences, order, min_count), Path(out) / f"{lang}.arpa.gz")
    return {lang: len(sentences) for lang, sentences in sorted(texts.items())}
