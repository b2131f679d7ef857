"""Error rates (WER, CER, MER) with jiwer and translation scores (BLEU, chrF) with sacrebleu.

Every function scores a corpus: lists of references and hypotheses, paired by position (a single
string is a corpus of one). Errors are summed over the corpus and divided by the total reference
length. Texts are compared as given; normalise them first (``polyspeech.text.normalize_text``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import jiwer
import sacrebleu

from polyspeech.errors import InputError
from polyspeech.text.languages import is_written_without_spaces, to_iso639_3

# One mixed-error-rate token: a Han/kana character alone, or a run of anything else but spaces.
_MIXED_TOKEN = re.compile(
    r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[^\s\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+"
)


@dataclass(frozen=True)
class ErrorRate:
    """Edit operations over a corpus; ``rate`` is their sum over ``reference_length``.

    An empty reference scores 0.0 when the hypothesis is empty too and 1.0 otherwise (the
    insertions are still counted).
    """

    rate: float
    substitutions: int
    deletions: int
    insertions: int
    reference_length: int


def _as_corpus(
    references: str | Sequence[str], hypotheses: str | Sequence[str]
) -> tuple[list[str], list[str]]:
    refs = [references] if isinstance(references, str) else list(references)
    hyps = [hypotheses] if isinstance(hypotheses, str) else list(hypotheses)
    if len(refs) != len(hyps):
        raise InputError(f"{len(refs)} references but {len(hyps)} hypotheses: they must pair up")
    if not refs:
        raise InputError("nothing to score: no references")
    return refs, hyps


def _error_rate(refs: list[list[str]], hyps: list[list[str]]) -> ErrorRate:
    """Word-level alignment over pre-tokenised texts (tokens contain no spaces)."""
    output = jiwer.process_words([" ".join(r) for r in refs], [" ".join(h) for h in hyps])
    length = sum(len(r) for r in refs)
    errors = output.substitutions + output.deletions + output.insertions
    rate = errors / length if length else float(errors > 0)
    return ErrorRate(rate, output.substitutions, output.deletions, output.insertions, length)


def wer(references: str | Sequence[str], hypotheses: str | Sequence[str]) -> ErrorRate:
    """Word error rate: tokens are the whitespace-separated words."""
    refs, hyps = _as_corpus(references, hypotheses)
    return _error_rate([r.split() for r in refs], [h.split() for h in hyps])


def cer(references: str | Sequence[str], hypotheses: str | Sequence[str]) -> ErrorRate:
    """Character error rate: every character but whitespace is a token."""
    refs, hyps = _as_corpus(references, hypotheses)
    return _error_rate(
        [list("".join(r.split())) for r in refs],
        [list("".join(h.split())) for h in hyps],
    )


def mer(references: str | Sequence[str], hypotheses: str | Sequence[str]) -> ErrorRate:
    """Mixed error rate (Chinese-English): each Han character and each Latin word is a token."""
    refs, hyps = _as_corpus(references, hypotheses)
    return _error_rate(
        [_MIXED_TOKEN.findall(r) for r in refs], [_MIXED_TOKEN.findall(h) for h in hyps]
    )


def error_rate(
    references: str | Sequence[str], hypotheses: str | Sequence[str], lang: str
) -> ErrorRate:
    """The usual error rate for ``lang``: MER for Chinese, CER for other languages written
    without spaces, WER otherwise."""
    code = to_iso639_3(lang)
    if code in {"cmn", "zho", "yue"}:
        return mer(references, hypotheses)
    if is_written_without_spaces(code):
        return cer(references, hypotheses)
    return wer(references, hypotheses)


def _bleu_tokenizer(lang: str) -> str:
    code = to_iso639_3(lang)
    if code in {"cmn", "zho", "yue"}:
        return "zh"
    return "char" if is_written_without_spaces(code) else "13a"


def bleu(
    references: str | Sequence[str], hypotheses: str | Sequence[str], lang: str = "eng"
) -> float:
    """Corpus BLEU (0-100), tokenised as sacrebleu does for the target language ``lang``."""
    refs, hyps = _as_corpus(references, hypotheses)
    return float(sacrebleu.corpus_bleu(hyps, [refs], tokenize=_bleu_tokenizer(lang)).score)


def chrf(references: str | Sequence[str], hypotheses: str | Sequence[str]) -> float:
    """Corpus chrF (0-100): character n-gram F-score, independent of tokenisation."""
    refs, hyps = _as_corpus(references, hypotheses)
    return float(sacrebleu.corpus_chrf(hyps, [refs]).score)
