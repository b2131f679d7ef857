"""The speech LLM (MooER's design): encoder -> adapter -> causal LM, the task chosen by the prompt.

The LLM reads the adapter's audio embeddings first, then the ChatML prompt with the task, and
answers. MooER's multitask model, asked to translate, answers "transcript\\ntranslation".
Batches are padded on the left, so every sequence ends where its answer starts.

Decoding follows MooER (beam 4, at most 200 new tokens, length penalty 0.8, -0.2 on the end of
sequence; the search ends once as many answers as beams have ended), with guards against what
LLM recognisers are known for: an answer stops when its last tokens repeat one n-gram over and
over (the repeats are cut), and it may not run longer than its audio could hold
(``tokens_per_second`` per answer line, plus a margin). Across the pieces of one file, a piece
whose answer repeats the last one kept (at most ``NEAR_REPEAT`` of its characters differing) is
dropped: pieces are answered independently, so the same sentence from different audio is the
LLM falling back on a sentence it knows, not what was said; asked again with that sentence's
tokens penalised, the embedded model only falls back on another (``Great, we won!`` for each
of "one", "two", "three" became ``Today is Wednesday.`` for each), so the repeat is dropped,
not decoded again. A speaker who says the same sentence in two pieces in a row loses the second.

Answers are decoded to whole characters only (see ``decode_whole_characters``). The language of
a result is the one asked for, else the one heard: the script of each piece's transcript tells
it among the model's languages (Han characters for its Chinese language, other letters for its
one other language), and the file's is the language of most of its speech. A single-task
model's translation comes without a transcript, so without a language unless one is asked for.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from torch import nn

from polyspeech.audio import SAMPLE_RATE
from polyspeech.audio.vad import pieces as audio_pieces
from polyspeech.errors import InputError
from polyspeech.hub.source import ModelSource
from polyspeech.options import AUTO, PROMPT_TASK, Recognizer, TranscribeOptions
from polyspeech.results import Result, Segment, Word
from polyspeech.speechllm.tokenizer import decode_whole_characters
from polyspeech.text.languages import join_words, to_iso639_3
from polyspeech.text.normalize import normalize_text

logger = logging.getLogger(__name__)

CHATML = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
)
PROMPTS = {"asr": "Transcribe speech to text. ", "ast": "Translate speech to english text. "}
TASKS = ("asr", "ast", "asr+ast")
CHUNK = 30.0  # seconds: the longest piece of audio one answer covers
NEAR_REPEAT = 0.1  # at most this share of characters differing, an answer repeats another
HAN_RANGES = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff"
HAN = re.compile(f"[{HAN_RANGES}]")
OTHER_WORD = re.compile(rf"[^\W\d_{HAN_RANGES}]+")  # a run of letters of other scripts
CHINESE = {"cmn", "yue", "wuu", "hak", "nan", "zho"}  # languages written in Han characters


@dataclass(frozen=True)
class DecodingConfig:
    num_beams: int = 4
    max_new_tokens: int = 200
    length_penalty: float = 0.8
    eos_bias: float = -0.2
    tokens_per_second: float = 10.0  # per answer line; with 4 more, the longest answer allowed
    repeat_tokens: int = 16  # a tail of one n-gram repeated over at least this many tokens ...
    repeat_times: int = 4  # ... and at least this many times stops the answer

    def to_dict(self) -> dict:
        return asdict(self)


MAX_NGRAM = 32  # the longest n-gram whose repeats are looked for


def repeated_tail(tokens: list[int], min_tokens: int, min_times: int) -> int:
    """The length (at most 32) of the n-gram the end of ``tokens`` repeats, covering at least
    ``min_tokens`` tokens and ``min_times`` repetitions; 0 if there is none."""
    for n in range(1, min(MAX_NGRAM, len(tokens) // min_times) + 1):
        times = max(min_times, -(-min_tokens // n))
        if n * times > len(tokens):
            continue
        tail = tokens[-n:]
        if all(tokens[-(i + 1) * n : len(tokens) - i * n] == tail for i in range(1, times)):
            return n
    return 0


def cut_repeats(tokens: list[int], min_tokens: int, min_times: int) -> list[int]:
    """``tokens`` with a repeated tail (see :func:`repeated_tail`) reduced to one occurrence."""
    n = repeated_tail(tokens, min_tokens, min_times)
    if not n:
        return tokens
    tail = tokens[-n:]
    while len(tokens) >= 2 * n and tokens[-2 * n : -n] == tail:
        tokens = tokens[:-n]
    return tokens


def repeats(previous: str | None, text: str) -> bool:
    """Whether ``text`` repeats ``previous`` (the last answer kept of the same file), its
    normalised characters differing in at most ``NEAR_REPEAT`` of them."""
    if previous is None:
        return False
    from polyspeech.eval.metrics import cer  # lazily: it imports sacrebleu, a second's work

    return cer(normalize_text(previous), normalize_text(text)).rate <= NEAR_REPEAT


def heard_language(transcript: str, languages: list[str]) -> str | None:
    """The language of ``transcript`` among a model's ``languages``, told by its script: more
    Han characters than words in other letters name the one language written in Han, else the
    one language written otherwise; None where the script leaves a choice (or has no letters)."""
    han, other = len(HAN.findall(transcript)), len(OTHER_WORD.findall(transcript))
    if not han and not other:
        return None
    chinese = han > other
    candidates = [lang for lang in languages if (to_iso639_3(lang) in CHINESE) == chinese]
    return candidates[0] if len(candidates) == 1 else None


class _Guard:
    """A logits processor: bias on the end of sequence; the end forced once a row has reached
    its sample's token limit or repeats itself (rows are sample * beams + beam)."""

    def __init__(self, eos: int, bias: float, limits: list[int], beams: int, config) -> None:
        self.eos, self.bias, self.limits, self.beams, self.config = eos, bias, limits, beams, config
        self.start: int | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor):
        if self.start is None:
            self.start = input_ids.shape[1]
        scores[:, self.eos] += self.bias
        generated = input_ids.shape[1] - self.start
        for row in range(input_ids.shape[0]):
            tokens = input_ids[row, self.start :].tolist()
            stop = generated >= self.limits[row // self.beams] or repeated_tail(
                tokens, self.config.repeat_tokens, self.config.repeat_times
            )
            if stop:
                scores[row] = -math.inf
                scores[row, self.eos] = 0.0
        return scores


class SpeechLlm(nn.Module, Recognizer):
    """``transcribe(audio, task=...)`` (:class:`Recognizer`); ``answer(clips, task)`` for clips
    of up to 30 s."""

    family = "speechllm"
    LEGACY_ORDER = ("lang", "task", "batch_size", "vad")  # transcribe's options by position

    def __init__(
        self,
        encoder: nn.Module,
        adapter: nn.Module,
        llm: nn.Module,
        tokenizer,
        multitask: bool = True,
        decoding: DecodingConfig | None = None,
        prompt_template: str = CHATML,
    ) -> None:
        super().__init__()
        self.encoder, self.adapter, self.llm = encoder, adapter, llm
        self.tokenizer = tokenizer
        self.multitask = multitask
        self.decoding = decoding or DecodingConfig()
        self.prompt_template = prompt_template
        self.languages: list[str] = []
        # where it was loaded from (polyspeech.speechllm.folder sets it); None: built in memory
        self.source: ModelSource | None = None

    @property
    def device(self) -> torch.device:
        return self.adapter.linear1.weight.device

    def prompt_ids(self, task: str) -> list[int]:
        return self.tokenizer(self.prompt_template.format(PROMPTS[task]))["input_ids"]

    def audio_embeddings(self, clips: list[np.ndarray]) -> list[torch.Tensor]:
        """Per clip, its (embeddings, llm width) audio embeddings."""
        states, lengths = self.encoder(clips)
        embedded = self.adapter(states.to(self.adapter.linear1.weight.dtype))
        counts = self.adapter.output_lengths(lengths).tolist()
        return [embedded[i, :count] for i, count in enumerate(counts)]

    def inputs(
        self, audio: list[torch.Tensor], prompt: list[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded input embeddings (audio, then prompt) and their attention mask."""
        prompt_embedded = self.llm.get_input_embeddings()(torch.tensor(prompt, device=self.device))
        rows = [torch.cat([clip.to(prompt_embedded.dtype), prompt_embedded]) for clip in audio]
        width = max(len(r) for r in rows)
        embeds = prompt_embedded.new_zeros(len(rows), width, prompt_embedded.shape[-1])
        mask = torch.zeros(len(rows), width, dtype=torch.long, device=self.device)
        for i, row in enumerate(rows):
            embeds[i, width - len(row) :] = row
            mask[i, width - len(row) :] = 1
        return embeds, mask

    def train(self, mode: bool = True) -> SpeechLlm:
        """As ``nn.Module.train``, but a frozen encoder stays in eval mode (no dropout), as
        MooER runs it."""
        super().train(mode)
        if not any(p.requires_grad for p in self.encoder.parameters()):
            self.encoder.eval()
        return self

    def forward(
        self, clips: list[np.ndarray], prompts: list[list[int]], answers: list[list[int]]
    ) -> torch.Tensor:
        """The training loss: the mean over samples of each answer's mean token loss (its end
        token included); the audio and prompt positions carry no label."""
        with torch.set_grad_enabled(
            torch.is_grad_enabled() and any(p.requires_grad for p in self.encoder.parameters())
        ):
            states, lengths = self.encoder(clips)
        embedded = self.adapter(states.to(self.adapter.linear1.weight.dtype))
        counts = self.adapter.output_lengths(lengths).tolist()
        table = self.llm.get_input_embeddings()
        rows, labels = [], []
        for i, count in enumerate(counts):
            tokens = torch.tensor(prompts[i] + answers[i], device=embedded.device)
            rows.append(torch.cat([embedded[i, :count], table(tokens).to(embedded.dtype)]))
            labels.append([-100] * (count + len(prompts[i])) + answers[i])
        width = max(len(r) for r in rows)
        embeds = embedded.new_zeros(len(rows), width, embedded.shape[-1])
        mask = torch.zeros(len(rows), width, dtype=torch.long, device=embedded.device)
        target = torch.full((len(rows), width), -100, dtype=torch.long, device=embedded.device)
        for i, row in enumerate(rows):  # padded on the right: positions count from 0 for all
            embeds[i, : len(row)] = row
            mask[i, : len(row)] = 1
            target[i, : len(row)] = torch.tensor(labels[i])
        logits = self.llm(inputs_embeds=embeds, attention_mask=mask).logits.float()
        losses = nn.functional.cross_entropy(
            logits[:, :-1].transpose(1, 2), target[:, 1:], ignore_index=-100, reduction="none"
        )
        answered = (target[:, 1:] != -100).float()
        return ((losses * answered).sum(1) / answered.sum(1)).mean()

    @torch.inference_mode()
    def answer(self, clips: list[np.ndarray], task: str) -> list[tuple[str, str | None]]:
        """Per clip (16 kHz, at most 30 s), its (transcript, translation) for ``task``: the
        translation is None for asr, the transcript empty for ast on a single-task model."""
        if task not in TASKS:
            raise InputError(f"task {task!r}: expected one of {', '.join(TASKS)}")
        if task == "asr+ast" and not self.multitask:
            asr = self.answer(clips, "asr")
            ast = self.answer(clips, "ast")
            return [(a[0], b[1]) for a, b in zip(asr, ast, strict=True)]
        prompt_task = "asr" if task == "asr" else "ast"
        lines = 2 if prompt_task == "ast" and self.multitask else 1
        texts = self._generate(clips, self.prompt_ids(prompt_task), lines)
        results = []
        for text in texts:
            parts = [part.strip() for part in text.split("\n")]
            if task == "asr":
                results.append((parts[0], None))
            elif self.multitask:
                results.append((parts[0], parts[1] if len(parts) > 1 else ""))
            else:
                results.append(("", parts[0]))
        return results

    def _generate(self, clips: list[np.ndarray], prompt: list[int], lines: int) -> list[str]:
        from transformers import LogitsProcessorList

        config = self.decoding
        audio = self.audio_embeddings(clips)
        embeds, mask = self.inputs(audio, prompt)
        limits = [
            min(
                config.max_new_tokens,
                math.ceil(lines * (config.tokens_per_second * len(c) / SAMPLE_RATE + 4)),
            )
            for c in clips
        ]
        eos = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        guard = _Guard(eos, config.eos_bias, limits, config.num_beams, config)
        output = self.llm.generate(
            inputs_embeds=embeds,
            attention_mask=mask,
            num_beams=config.num_beams,
            max_new_tokens=max(limits) + 1,
            length_penalty=config.length_penalty,
            early_stopping=True,  # done once every beam has ended: a forced end ends the search
            do_sample=False,
            logits_processor=LogitsProcessorList([guard]),
            eos_token_id=eos,
            pad_token_id=self.tokenizer.pad_token_id
            if self.tokenizer.pad_token_id is not None
            else eos,
        )
        texts = []
        for row in output.tolist():
            tokens = row[: row.index(eos)] if eos in row else row
            tokens = cut_repeats(tokens, config.repeat_tokens, config.repeat_times)
            texts.append(decode_whole_characters(self.tokenizer, tokens))
        return texts

    def _recognise(
        self, clips: list[np.ndarray], languages: list[str | None], options: TranscribeOptions
    ) -> list[Result]:
        """Transcribe, translate or both, audio of any length (:class:`Recognizer`): VAD pieces
        of at most 30 s (without VAD, 30 s windows), answered in batches (default 8), joined.
        A file with no speech gives an empty result, not an invented sentence.

        The result's language is that of the speech: the one asked for when given, else the
        one heard (see the module's notes), also for a translation. Segments carry their
        piece's times and language; ``word_timestamps`` aligns each transcript to its piece in
        that language with the CTC ``aligner`` (a loaded model, a folder or a builtin name)."""
        decoding = self.decoding
        if options.beam_size is not None:
            self.decoding = replace(decoding, num_beams=options.beam_size)
        try:
            return self._answered(clips, languages, options)
        finally:
            self.decoding = decoding

    def _answered(
        self, files: list[np.ndarray], langs: list[str | None], options: TranscribeOptions
    ) -> list[Result]:
        task, batch_size = PROMPT_TASK[options.task], options.batch_size or 8
        vad, vad_threshold = options.vad_filter, options.vad_parameters.threshold
        word_timestamps, aligner = options.word_timestamps, options.aligner
        asked = [None if lang in (None, AUTO) else to_iso639_3(lang) for lang in langs]
        pieces = [
            (index, start, end)
            for index, spans in enumerate(audio_pieces(files, CHUNK, vad, threshold=vad_threshold))
            for start, end in spans
        ]
        answers: list[tuple[str, str | None]] = []
        for first in range(0, len(pieces), batch_size):
            group = pieces[first : first + batch_size]
            answers += self.answer([files[i][s:e] for i, s, e in group], task)
        segments: list[list[Segment]] = [[] for _ in files]
        kept: list[str | None] = [None for _ in files]  # per file, the last answer kept
        for (index, start, end), (text, translation) in zip(pieces, answers, strict=True):
            said = text or translation
            if not said or repeats(kept[index], said):
                continue
            kept[index] = said
            language = asked[index] or heard_language(text, self.languages)
            main = translation if task == "ast" else text
            extra = translation if task == "asr+ast" else None
            segments[index].append(
                Segment(start / SAMPLE_RATE, end / SAMPLE_RATE, main or "", [], extra, language)
            )
        if options.cross_check is not None and task != "ast":
            _cross_check(files, segments, options.cross_check, options.agreement_threshold)
        results = []
        for samples, lang, found in zip(files, asked, segments, strict=True):
            language = lang or _most_heard(found)
            if word_timestamps and task != "ast":
                self._time_words(samples, found, aligner)
            written = "eng" if task == "ast" else language  # the language of the text
            joined = join_words((s.text for s in found), written)
            translation = None
            if task == "asr+ast":
                translation = " ".join(s.translation for s in found if s.translation)
            duration = round(len(samples) / SAMPLE_RATE, 3)
            source = None if self.source is None else self.source.describe()
            results.append(Result(joined, language, found, duration, translation, source=source))
        return results

    @staticmethod
    def _time_words(samples: np.ndarray, segments: list[Segment], aligner) -> None:
        """Word times for each segment, its transcript aligned in its language."""
        from polyspeech.align.spans import align_transcript, load_aligner

        model = load_aligner(aligner)
        for segment in segments:
            if not normalize_text(segment.text, segment.language).strip():
                continue
            start = round(segment.start * SAMPLE_RATE)
            piece = samples[start : round(segment.end * SAMPLE_RATE)]
            try:
                spans = align_transcript(model, piece, [segment.text], segment.language).spans
            except InputError as error:  # the LLM's text does not fit its piece of audio
                logger.warning(
                    "no word times for %.2f-%.2f s: %s", segment.start, segment.end, error
                )
                continue
            segment.words = [
                Word(
                    s.text,
                    round(segment.start + s.start, 3),
                    round(segment.start + s.end, 3),
                    s.score,
                )
                for s in spans
            ]


def _cross_check(
    files: list[np.ndarray], segments: list[list[Segment]], checker, threshold: float
) -> None:
    """Each segment's ``agreement`` with the CTC model ``checker`` on its piece of audio (in the
    segment's language, where the checker knows it), and ``flagged`` below ``threshold``: a
    fluent sentence the recogniser does not hear is said to be doubtful, not passed off as a
    transcript. The agreement is exp(-d), d being how much less likely, per character, the
    text is under the checker (CTC's sum over its alignments) than the checker's own best
    path: near 1 for what was said, near 0 for text the audio does not hold."""
    from polyspeech.align.spans import load_aligner
    from polyspeech.ctc.model import MIN_SAMPLES

    model = load_aligner(checker)
    for samples, found in zip(files, segments, strict=True):
        for segment in found:
            if segment.language not in model.languages or not segment.text.strip():
                continue
            piece = samples[round(segment.start * SAMPLE_RATE) : round(segment.end * SAMPLE_RATE)]
            if len(piece) < MIN_SAMPLES:
                continue
            log_probs = torch.from_numpy(model.log_probs([piece], segment.language)[0]).float()
            vocabulary = model.vocabulary(segment.language)
            targets = vocabulary.encode(normalize_text(segment.text, segment.language).strip())
            text = -nn.functional.ctc_loss(
                log_probs[:, None],
                torch.tensor([targets]),
                torch.tensor([len(log_probs)]),
                torch.tensor([len(targets)]),
                blank=vocabulary.blank,
                reduction="sum",
            )
            best = log_probs.max(dim=1).values.sum()
            gap = max(0.0, float(best - text) / max(1, len(targets)))  # inf: cannot fit
            segment.agreement = round(math.exp(-gap), 3)
            segment.flagged = segment.agreement < threshold


def _most_heard(segments: list[Segment]) -> str | None:
    """The language of the most speech among ``segments`` (None if none has one)."""
    speech: dict[str, float] = {}
    for segment in segments:
        if segment.language is not None:
            speech[segment.language] = (
                speech.get(segment.language, 0.0) + segment.end - segment.start
            )
    return max(speech, key=speech.__getitem__) if speech else None
