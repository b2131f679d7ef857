"""The ``polyspeech`` command: parse options, call the library, report, exit.

Exit codes: 0 success, 2 a problem the user can fix (bad input, missing dependency: one line on
stderr, no traceback), 1 an internal failure.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from polyspeech.errors import InputError, PolyspeechError

app = typer.Typer(
    help="Multilingual speech recognition, translation, alignment, language ID and synthesis.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Corpora: synthesise, validate, convert.", no_args_is_help=True)
app.add_typer(data_app, name="data")
train_app = typer.Typer(help="Train models.", no_args_is_help=True)
app.add_typer(train_app, name="train")

_stderr = Console(stderr=True)


def _version(asked: bool) -> None:
    if asked:
        from polyspeech import __version__

        typer.echo(f"polyspeech {__version__}")
        raise typer.Exit()


@app.callback()
def _everywhere(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Options of polyspeech itself, before any command."""


def _device(name: str) -> str:
    from polyspeech.devices import check_device

    return check_device(name)


def _output_file(path: Path | None) -> Path | None:
    from polyspeech.files import check_output_file

    return None if path is None else check_output_file(path)


def _output_folder(path: Path | None) -> Path | None:
    from polyspeech.files import check_output_folder

    return None if path is None else check_output_folder(path)


def _threads(count: int) -> int:
    from polyspeech.threads import configure

    return configure(count)


Threads = Annotated[
    int,
    typer.Option(
        callback=_threads,
        min=0,
        help="CPU threads to compute on; 0: the CPUs this process may use (affinity and cgroup "
        "quota), or OMP_NUM_THREADS where set.",
    ),
]


def _vad_threshold(threshold: float) -> float:
    from polyspeech.audio.vad import check_threshold

    check_threshold(threshold)
    return threshold


VadThreshold = Annotated[
    float,
    typer.Option(
        callback=_vad_threshold,
        help="Speech probability above which VAD hears speech (0-1; lower finds speech under "
        "music or noise).",
    ),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
BatchSize = Annotated[int, typer.Option(min=1, help="Pieces of up to 30 s per forward pass.")]
Vad = Annotated[bool, typer.Option(help="Cut at speech regions (silero-vad), else 30 s windows.")]
Device = Annotated[
    str,
    typer.Option(
        callback=_device, help="auto (CUDA where present, else cpu), cpu, cuda or cuda:N."
    ),
]
OutputDir = Annotated[
    Path | None, typer.Option(callback=_output_folder, help="Write files here, not stdout.")
]
DType = Annotated[
    str,
    typer.Option(
        help="float32, bfloat16, int8 (CPU), or auto (bfloat16 where the processor is fast at "
        "it, else int8 on a CPU)."
    ),
]
# What every --model takes, besides what each command says it must be
MODEL_NAMES = (
    "a folder, a builtin name (polyspeech models), or a published model: a Hugging Face id "
    "ORG/NAME or a ModelScope id modelscope:ORG/NAME, either pinned as ID@REV"
)


def _model_help(what: str) -> str:
    return f"{what}: {MODEL_NAMES}."


def _revision_of(option: str, note: str = ""):
    return Annotated[
        str | None,
        typer.Option(
            "--revision",
            help=f"Branch, tag or commit of {option}, a Hub id (the same as {option} "
            f"ORG/NAME@REV{note}).",
            show_default=False,
        ),
    ]


Revision = _revision_of("--model")
OneRevision = _revision_of("--model", "; with several models, write each so")


def _pinned(model: str | None, revision: str | None, option: str = "--model") -> str | None:
    """``model`` with ``--revision`` written into it (``ORG/NAME@REV``), as every loader and the
    results' provenance take it."""
    if revision is None:
        return model
    if model is None:
        raise InputError(f"--revision {revision}: it is the revision of {option}; give {option}")
    if not revision.strip():
        raise InputError("--revision: empty; give a branch, tag or commit")
    from polyspeech.hub import BUILTIN, split_revision

    if model in BUILTIN or Path(model).exists():
        raise InputError(
            f"--revision {revision}: {option} {model} is a builtin or local model; a revision "
            "is for Hub ids"
        )
    repo_id, pinned = split_revision(model, revision)
    return f"{repo_id}@{pinned}"


def _pinned_one(specs: list[str], revision: str | None) -> list[str]:
    """``--revision`` written into the one model of a command that takes several (``NAME=``
    before it kept)."""
    if revision is None:
        return specs
    if len(specs) != 1:
        raise InputError("--revision pins one --model; with several, write each ORG/NAME@REV")
    name, equals, model = specs[0].rpartition("=")
    return [f"{name}{equals}{_pinned(model, revision)}"]


LanguageModel = Annotated[
    Path | None,
    typer.Option(
        "--lm",
        help="Beam search with an n-gram: an ARPA/KenLM file, or a folder of <lang>.arpa[.gz] "
        "(character LMs from `train lm` or word LMs); none: greedy. Default: the model's own "
        "(builtin:ctc decodes with builtin:ctc-lm), else greedy.",
    ),
]


@contextmanager
def _progress(total: int | None, label: str, quiet: bool):
    """Yield a callable that advances a progress bar (shown only on a terminal)."""
    if quiet or not _stderr.is_terminal:
        yield lambda: None
        return
    columns = (label, BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=_stderr, transient=True) as progress:
        task = progress.add_task(label, total=total)
        yield lambda: progress.advance(task)


@data_app.command("synth")
def data_synth(
    out: Annotated[
        Path,
        typer.Option(
            "--output-dir",
            "--out",
            callback=_output_folder,
            help="Folder for audio/ and train/dev/test.jsonl.",
        ),
    ],
    langs: Annotated[
        str, typer.Option(help="Comma-separated ISO 639 codes; default: every language.")
    ] = "",
    per_lang: Annotated[
        int, typer.Option(min=1, help="Clips per language (80/10/10 split).")
    ] = 1000,
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives the same files.")] = 0,
    jobs: Annotated[int, typer.Option(min=0, help="Worker processes (default: all cores).")] = 0,
    clean: Annotated[
        bool, typer.Option(help="No silence around the speech and no noise, like `speak`.")
    ] = False,
    real_voices: Annotated[
        str,
        typer.Option(
            help="Comma-separated voices or engines made from real speakers (kokoro, flite, "
            "festival, or names such as flite:slt) to speak every clip of the languages they "
            "speak, in place of espeak-ng; test clips get held-out voices."
        ),
    ] = "",
    augment_share: Annotated[
        float,
        typer.Option(
            help="Share of clips put through rooms, noise, babble, codecs and "
            "speed/tract-length perturbation."
        ),
    ] = 0.0,
    quiet: Quiet = False,
) -> None:
    """Synthesise a multilingual speech corpus with espeak-ng (or voices of real speakers)."""
    from polyspeech.data.synth import synthesize_corpus
    from polyspeech.text.languages import to_iso639_3
    from polyspeech.tts.espeak import VOICES

    codes = [to_iso639_3(code) for code in langs.split(",") if code.strip()] or list(VOICES)
    with _progress(per_lang * len(codes), "synthesising", quiet) as advance:
        counts = synthesize_corpus(
            out,
            codes,
            per_lang,
            seed=seed,
            jobs=jobs or None,
            on_clip=advance,
            clean=clean,
            real_voices=[name.strip() for name in real_voices.split(",") if name.strip()],
            augment_share=augment_share,
        )
    summary = ", ".join(f"{name} {count}" for name, count in counts.items())
    typer.echo(f"wrote {sum(counts.values())} clips to {out} ({summary})")


@data_app.command("synth-parallel")
def data_synth_parallel(
    out: Annotated[
        Path,
        typer.Option(
            "--output-dir",
            "--out",
            callback=_output_folder,
            help="Folder for audio/ and the split manifests.",
        ),
    ],
    per_lang: Annotated[
        int, typer.Option(min=1, help="Clips per language (80/10/10 split).")
    ] = 1000,
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives the same files.")] = 0,
    jobs: Annotated[int, typer.Option(min=0, help="Worker processes (default: all cores).")] = 0,
    quiet: Quiet = False,
) -> None:
    """Synthesise Chinese/English parallel speech (Chinese clips carry their English)."""
    from polyspeech.data.synth import PARALLEL_LANGS, synthesize_parallel

    with _progress(None, "synthesising", quiet) as advance:
        counts = synthesize_parallel(out, per_lang, seed=seed, jobs=jobs or None, on_clip=advance)
    summary = ", ".join(f"{name} {count}" for name, count in counts.items())
    typer.echo(
        f"wrote {sum(counts.values())} {'/'.join(PARALLEL_LANGS)} clips to {out} ({summary})"
    )


@data_app.command("validate")
def data_validate(
    manifest: Annotated[Path, typer.Argument(help="A JSON Lines manifest.")],
    max_duration: Annotated[
        float | None, typer.Option(min=0, help="Refuse audio longer than this (seconds).")
    ] = None,
    tolerance: Annotated[
        float, typer.Option(min=0, help="Allowed difference from the declared duration (seconds).")
    ] = 0.1,
    quiet: Quiet = False,
) -> None:
    """Check every line of a manifest: its fields, its audio, and the declared duration."""
    from polyspeech.data.manifest import validate_manifest

    with _progress(None, "validating", quiet) as advance:
        seconds = validate_manifest(manifest, max_duration, tolerance, advance)
    for lang, total in sorted(seconds.items()):
        typer.echo(f"{lang}\t{total / 3600:.3f} h")
    typer.echo(f"{manifest}: valid, {sum(seconds.values()) / 3600:.3f} h of audio")


@data_app.command("from-kaldi")
def data_from_kaldi(
    folder: Annotated[Path, typer.Argument(help="Kaldi/WeNet folder with wav.scp and text.")],
    out: Annotated[
        Path,
        typer.Option("--output", "--out", callback=_output_file, help="The manifest to write."),
    ],
    lang: Annotated[str | None, typer.Option(help="Language, unless utt2lang gives it.")] = None,
) -> None:
    """Convert a Kaldi/WeNet data folder to a JSON Lines manifest."""
    from polyspeech.data.manifest import import_kaldi, write_manifest

    count = write_manifest(out, import_kaldi(folder, lang))
    typer.echo(f"wrote {count} utterances to {out}")


@data_app.command("to-kaldi")
def data_to_kaldi(
    manifest: Annotated[Path, typer.Argument(help="A JSON Lines manifest.")],
    out: Annotated[
        Path,
        typer.Option(
            "--output-dir",
            "--out",
            callback=_output_folder,
            help="Folder for wav.scp, text, utt2lang, segments.",
        ),
    ],
) -> None:
    """Convert a JSON Lines manifest to a Kaldi/WeNet data folder."""
    from polyspeech.data.manifest import export_kaldi, read_manifest

    count = export_kaldi(read_manifest(manifest), out)
    typer.echo(f"wrote {count} utterances to {out}")


@data_app.command("to-shards")
def data_to_shards(
    manifest: Annotated[Path, typer.Argument(help="A JSON Lines manifest.")],
    out: Annotated[
        Path,
        typer.Option(
            "--output-dir",
            "--out",
            callback=_output_folder,
            help="Folder for shard-000000.tar, ...",
        ),
    ],
    per_shard: Annotated[int, typer.Option(min=1, help="Utterances per shard.")] = 1000,
) -> None:
    """Pack a manifest into WebDataset-style tar shards (KEY.json + KEY.flac), for training."""
    from polyspeech.data.manifest import read_manifest
    from polyspeech.data.shards import write_shards

    shards = write_shards(read_manifest(manifest), out, per_shard)
    typer.echo(f"wrote {len(shards)} shards to {out}")


@data_app.command("romanize")
def data_romanize(
    manifests: Annotated[list[Path], typer.Argument(help="JSON Lines manifests.")],
    out: Annotated[
        Path,
        typer.Option("--output", "--out", callback=_output_file, help="The manifest to write."),
    ],
    per_lang: Annotated[
        int | None,
        typer.Option(min=1, help="At most this many lines of each language (the first)."),
    ] = None,
) -> None:
    """Texts as the universal alignment model reads them (uroman, a-z and '), language und."""
    from polyspeech.align.transcript import romanize_manifests

    count, skipped = romanize_manifests(manifests, out, per_lang)
    typer.echo(f"wrote {count} utterances to {out}; {skipped} left no letters and were skipped")


Task = Annotated[
    str,
    typer.Option(
        help="transcribe, translate (into English; speech LLMs) or transcribe+translate (both)."
    ),
]


@app.command("transcribe")
def transcribe_command(
    files: Annotated[list[Path] | None, typer.Argument(help="Audio files.")] = None,
    model: Annotated[
        str, typer.Option(help=_model_help("A CTC model or a speech LLM"))
    ] = "builtin:ctc",
    revision: Revision = None,
    lang: Annotated[
        str | None,
        typer.Option(
            help="Language (ISO 639-3 or -1), or auto: identified per segment (the default of "
            "a CTC model of several languages)."
        ),
    ] = None,
    lid_model: Annotated[
        str, typer.Option(help=_model_help("The language-ID model of --lang auto"))
    ] = "builtin:lid",
    manifest: Annotated[
        Path | None, typer.Option(help="Transcribe a manifest's lines, each in its lang.")
    ] = None,
    task: Task = "transcribe",
    output_format: Annotated[str, typer.Option(help="txt, json, srt, vtt or tsv.")] = "txt",
    output_dir: OutputDir = None,
    word_timestamps: Annotated[
        bool,
        typer.Option(
            help="Words with times: a cue per word in srt, vtt and tsv, listed after the text "
            "in txt (a speech LLM aligns its text for them)."
        ),
    ] = False,
    batch_size: BatchSize = 4,
    vad: Vad = True,
    vad_threshold: VadThreshold = 0.5,
    lm: LanguageModel = None,
    cross_check: Annotated[
        str,
        typer.Option(
            help="A speech LLM's transcript is checked against this CTC model on the same "
            "audio; a segment it does not hear is flagged in json and warned of (none: off)."
        ),
    ] = "builtin:ctc",
    device: Device = "auto",
    dtype: DType = "auto",
    threads: Threads = 0,
    quiet: Quiet = False,
) -> None:
    """Transcribe audio files (or a manifest) with a CTC model or a speech LLM."""
    _recognise(
        files, _pinned(model, revision), lang, manifest, task, output_format, output_dir,
        word_timestamps, batch_size, vad, vad_threshold, lm, device, dtype, lid_model, quiet,
        None if cross_check == "none" else cross_check,
    )  # fmt: skip


@app.command("translate")
def translate_command(
    files: Annotated[list[Path] | None, typer.Argument(help="Audio files.")] = None,
    model: Annotated[str, typer.Option(help=_model_help("A speech LLM"))] = "builtin:speechllm",
    revision: Revision = None,
    manifest: Annotated[Path | None, typer.Option(help="Translate a manifest's lines.")] = None,
    output_format: Annotated[str, typer.Option(help="txt, json, srt, vtt or tsv.")] = "txt",
    output_dir: OutputDir = None,
    batch_size: BatchSize = 8,
    vad: Vad = True,
    vad_threshold: VadThreshold = 0.5,
    device: Device = "auto",
    dtype: DType = "auto",
    threads: Threads = 0,
    quiet: Quiet = False,
) -> None:
    """Translate speech into English text with a speech LLM (task translate)."""
    _recognise(
        files, _pinned(model, revision), None, manifest, "translate", output_format, output_dir,
        False, batch_size, vad, vad_threshold, None, device, dtype, quiet=quiet,
    )  # fmt: skip


def _recognise(
    files, model, lang, manifest, task, output_format, output_dir, word_timestamps, batch_size,
    vad, vad_threshold, lm, device, dtype, lid_model="builtin:lid", quiet=False,
    cross_check="builtin:ctc",
) -> None:  # fmt: skip
    import json

    from polyspeech import load
    from polyspeech.data.manifest import load_entry_audio, read_manifest
    from polyspeech.options import OLD_TASKS, TranscribeOptions, VadOptions
    from polyspeech.writers import WRITERS, write_result

    if output_format not in WRITERS:
        raise InputError(f"unknown output format {output_format!r}; use {', '.join(WRITERS)}")
    options = TranscribeOptions(
        task=OLD_TASKS.get(task, task),  # asr, ast and asr+ast, as --task took them before
        word_timestamps=word_timestamps,
        vad_filter=vad,
        vad_parameters=VadOptions(vad_threshold),
        batch_size=batch_size,
        lm=lm,
        lid=lid_model,
        cross_check=cross_check,
    )
    if not files and manifest is None:
        raise InputError("nothing to transcribe: give audio files or --manifest")
    recognizer = load(model, device=device, dtype=dtype)
    recognizer.check(options)
    if recognizer.family == "speechllm" and lm is not None:
        raise InputError("--lm is for CTC models; a speech LLM decodes with its own LM")

    provenance = recognizer.source.describe()

    def run(audio, language, name):
        result = recognizer.transcribe(audio, language=language, options=options)
        result.source = provenance
        for segment in result.segments:
            if segment.flagged:
                typer.echo(
                    f"polyspeech: warning: {name}: {segment.start:.2f}-{segment.end:.2f} s: "
                    f"{cross_check} does not hear the speech LLM's text (agreement "
                    f"{segment.agreement:.3f}); it may not be what was said",
                    err=True,
                )
        return result

    if manifest is not None:
        for entry in read_manifest(manifest):
            result = run(load_entry_audio(entry), entry.lang, entry.id)
            typer.echo(
                json.dumps(
                    {"id": entry.id, "audio": entry.audio, **result.to_dict()}, ensure_ascii=False
                )
            )
        return

    def handle(path: Path) -> None:
        result = run(path, lang, path)
        if output_dir is not None:
            target = output_dir / f"{path.stem}.{output_format}"
            write_result(result, target, output_format, word_timestamps)
        elif word_timestamps and output_format == "txt":
            typer.echo(f"{path} [{result.language}]: {result.text}")
            for segment in result.segments:
                for word in segment.words:
                    typer.echo(f"  {word.start:8.2f} {word.end:8.2f}  {word.word}")
        else:
            typer.echo(WRITERS[output_format](result, word_timestamps), nl=False)
            if result.translation is not None and output_format == "txt":
                typer.echo(result.translation)

    _each_file(files or [], handle, "recognising", quiet)


def _each_file(paths: list[Path], handle, label: str, quiet: bool) -> None:
    """``handle`` every path, a progress bar counting them (on a terminal, unless ``quiet``); a
    file that fails is one line on stderr and the others still run (as whisper's CLI does);
    exit status 2 at the end if any failed."""
    failed = 0
    with _progress(len(paths), label, quiet or len(paths) < 2) as advance:
        for path in paths:
            try:
                handle(path)
            except PolyspeechError as error:
                typer.echo(f"polyspeech: error: {error}", err=True)
                failed += 1
            advance()
    if failed and len(paths) > 1:
        typer.echo(f"polyspeech: {failed} of {len(paths)} files failed", err=True)
    if failed:
        raise typer.Exit(2)


@app.command("evaluate")
def evaluate_command(
    manifest: Annotated[Path, typer.Argument(help="Manifest with reference texts.")],
    model: Annotated[
        list[str] | None,
        typer.Option(
            help=f"{MODEL_NAMES}; repeat to compare models side by side, each at its own "
            "revision as ORG/NAME@REV (default: builtin:ctc, builtin:speechllm for ast, "
            "builtin:lid for lid)."
        ),
    ] = None,
    revision: OneRevision = None,
    task: Annotated[
        str,
        typer.Option(
            help="transcribe (CER/WER of the text; also asr), translate (BLEU/chrF of the "
            "translation; also ast) or lid (accuracy of a language-ID model)."
        ),
    ] = "transcribe",
    max_seconds: Annotated[
        float | None, typer.Option(min=0.1, help="lid: hear only each clip's first seconds.")
    ] = None,
    keep_case: Annotated[bool, typer.Option(help="asr: score with case kept.")] = False,
    keep_punctuation: Annotated[
        bool, typer.Option(help="asr: score with punctuation kept.")
    ] = False,
    json_out: Annotated[
        Path | None,
        typer.Option(
            "--output", "--json", callback=_output_file, help="Write the report as JSON here."
        ),
    ] = None,
    markdown: Annotated[
        Path | None, typer.Option(callback=_output_file, help="Also write a Markdown table here.")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option(callback=_output_file, help="Also draw a PNG bar chart here.")
    ] = None,
    batch_size: BatchSize = 4,
    vad: Vad = True,
    lm: LanguageModel = None,
    device: Device = "auto",
    dtype: DType = "auto",
    threads: Threads = 0,
    quiet: Quiet = False,
) -> None:
    """Score models on a manifest: CER and WER per language (MER for cmn), macro, real-time
    factor and peak memory; with --task translate BLEU and chrF of a speech LLM's English; with
    --task lid the accuracy of a language-ID model."""
    import gc
    import json

    from polyspeech.eval.memory import peak_bytes, reset_peak
    from polyspeech.eval.report import format_comparison, format_table, plot_comparison, pyplot
    from polyspeech.files import atomic_text_file
    from polyspeech.text.normalize import describe_normalization

    if plot is not None:
        pyplot()  # matplotlib missing: said now, not after the evaluation

    task = {"transcribe": "asr", "translate": "ast"}.get(task, task)  # the reports' names
    if task not in ("asr", "ast", "lid"):
        raise InputError(f"unknown task {task!r} to score; use transcribe, translate or lid")
    if task != "asr" and (lm is not None or keep_case or keep_punctuation):
        raise InputError("--lm, --keep-case and --keep-punctuation are for recognition (asr)")
    if task != "lid" and max_seconds is not None:
        raise InputError("--max-seconds is for language ID (task lid)")
    names = model or [
        {"asr": "builtin:ctc", "ast": "builtin:speechllm", "lid": "builtin:lid"}[task]
    ]
    names = _pinned_one(names, revision)
    if len(set(names)) < len(names):
        raise InputError("a model is named twice; name each model once")
    options = {
        "batch_size": batch_size,
        "vad": vad,
        "lm": lm,
        "max_seconds": max_seconds,
        "fold_case": not keep_case,
        "drop_punctuation": not keep_punctuation,
        "device": device,
        "dtype": dtype,
    }
    reports = {}
    for name in names:
        reset_peak()
        with _progress(None, f"evaluating {name}", quiet) as advance:
            report = _evaluate(name, manifest, task, options, advance)
        reports[name] = {"model": name, **report, "peak_memory_bytes": peak_bytes()}
        gc.collect()
    for name, report in reports.items():
        if report["source"]["revision"]:  # a published model: the commit scored
            typer.echo(
                f"model {name}: {report['source']['repo']} at {report['source']['revision']}"
            )
    if task == "lid":
        heard = f"first {max_seconds:g} s" if max_seconds else "whole clips"
        typer.echo(f"most probable language of each line against its lang ({heard})")
    elif task == "asr":
        typer.echo(f"normalisation: {describe_normalization(not keep_case, not keep_punctuation)}")
        for name, report in reports.items():
            typer.echo(f"decoding{f' ({name})' if len(reports) > 1 else ''}: {report['decoding']}")
    else:
        typer.echo("scored as written: sacrebleu BLEU (13a tokens, case-sensitive) and chrF")
    if len(reports) == 1:
        (report,) = reports.values()
        typer.echo(format_table(report))
        typer.echo(f"peak memory {report['peak_memory_bytes'] / 1e9:.2f} GB")
    else:
        typer.echo(format_comparison(reports))
    if json_out is not None:
        combined = report if len(reports) == 1 else {"task": task, "models": list(reports.values())}
        with atomic_text_file(json_out) as stream:
            json.dump(combined, stream, indent=1)
    if markdown is not None:
        with atomic_text_file(markdown) as stream:
            stream.write(format_comparison(reports) + "\n")
    if plot is not None:
        plot_comparison(reports, plot)


def _evaluate(name: str, manifest: Path, task: str, options: dict, advance) -> dict:
    """One model's report (see :mod:`polyspeech.eval.report`)."""
    from polyspeech import load
    from polyspeech.eval.report import evaluate_asr, evaluate_lid, evaluate_translation
    from polyspeech.lid.model import LidModel

    if task == "lid":
        identifier = LidModel(name, device=options["device"], precision=options["dtype"])
        return evaluate_lid(identifier, manifest, options["max_seconds"], on_line=advance)
    recognizer = load(name, device=options["device"], dtype=options["dtype"])
    if task == "ast":
        return evaluate_translation(
            recognizer, manifest, options["batch_size"], options["vad"], on_line=advance
        )
    return evaluate_asr(
        recognizer, manifest, options["batch_size"], options["vad"], options["lm"], advance,
        options["fold_case"], options["drop_punctuation"],
    )  # fmt: skip


def _align_file(
    audio: Path, transcript: Path, model: str, lang: str | None, granularity: str, star: bool,
    batch_size: int, device: str, dtype: str, quiet: bool,
):  # fmt: skip
    from polyspeech import load
    from polyspeech.align.spans import align_transcript
    from polyspeech.align.transcript import read_transcript
    from polyspeech.audio import load_audio
    from polyspeech.ctc.transcribe import window_count

    lines = read_transcript(transcript)
    samples = load_audio(audio)
    aligner = load(model, device=device, dtype=dtype)
    try:
        with _progress(window_count(samples), "hearing", quiet) as advance:
            result = align_transcript(
                aligner, samples, lines, lang, granularity, star, batch_size, on_window=advance
            )
    except InputError as error:
        raise InputError(f"{audio} with {transcript}: {error}") from None
    if result.unmapped:
        listed = " ".join(f"{char!r}x{count}" for char, count in result.unmapped.items())
        message = f"polyspeech: warning: {transcript}: not in the model's vocabulary: {listed}"
        typer.echo(message, err=True)
    return samples, result


Granularity = Annotated[str, typer.Option(help="word, char or line.")]
Star = Annotated[
    bool, typer.Option(help="A <star> token takes audio the transcript does not cover.")
]
AlignModel = Annotated[
    str, typer.Option(help=_model_help("A CTC model (any language: builtin:align)"))
]


@app.command("align")
def align_command(
    audio: Annotated[Path, typer.Argument(help="The recording.")],
    transcript: Annotated[Path, typer.Argument(help="Its transcript: one utterance per line.")],
    lang: Annotated[str | None, typer.Option(help="Language of the transcript.")] = None,
    model: AlignModel = "builtin:align",
    revision: Revision = None,
    granularity: Granularity = "word",
    star: Star = False,
    output_format: Annotated[str, typer.Option(help="json, srt, vtt, textgrid or ctm.")] = "json",
    output: Annotated[
        Path | None, typer.Option(callback=_output_file, help="Write here, not to stdout.")
    ] = None,
    batch_size: BatchSize = 4,
    device: Device = "auto",
    dtype: DType = "auto",
    threads: Threads = 0,
    quiet: Quiet = False,
) -> None:
    """Force-align a recording to its transcript: times and scores of words, characters or lines."""
    from polyspeech.audio import SAMPLE_RATE
    from polyspeech.files import atomic_text_file
    from polyspeech.writers import (
        SPAN_FORMATS,
        spans_to_ctm,
        spans_to_json,
        spans_to_srt,
        spans_to_textgrid,
        spans_to_vtt,
    )

    if output_format not in SPAN_FORMATS:
        raise InputError(f"unknown output format {output_format!r}; use {', '.join(SPAN_FORMATS)}")
    samples, result = _align_file(
        audio, transcript, _pinned(model, revision), lang, granularity, star, batch_size, device,
        dtype, quiet,
    )  # fmt: skip
    spans = result.spans
    text = {
        "json": lambda: spans_to_json(spans, result.unmapped),
        "srt": lambda: spans_to_srt(spans),
        "vtt": lambda: spans_to_vtt(spans),
        "textgrid": lambda: spans_to_textgrid(spans, len(samples) / SAMPLE_RATE, granularity),
        "ctm": lambda: spans_to_ctm(spans, audio.stem),
    }[output_format]()
    if output is None:
        typer.echo(text, nl=False)
    else:
        with atomic_text_file(output) as stream:
            stream.write(text)


@app.command("segment")
def segment_command(
    audio: Annotated[Path, typer.Argument(help="A long recording.")],
    transcript: Annotated[Path, typer.Argument(help="Its transcript: one utterance per line.")],
    out_dir: Annotated[
        Path,
        typer.Option(
            "--output-dir",
            "--out-dir",
            callback=_output_folder,
            help="Folder for audio/ and manifest.jsonl.",
        ),
    ],
    lang: Annotated[str, typer.Option(help="Language of the transcript (goes in the manifest).")],
    model: AlignModel = "builtin:align",
    revision: Revision = None,
    star: Star = True,
    min_score: Annotated[
        float, typer.Option(help="Lines scoring below this are flagged (low_score: true).")
    ] = 0.3,
    batch_size: BatchSize = 4,
    device: Device = "auto",
    dtype: DType = "auto",
    threads: Threads = 0,
    quiet: Quiet = False,
) -> None:
    """Cut a long recording into one clip per transcript line, with a training manifest."""
    from polyspeech.align.segment import write_segments
    from polyspeech.text.languages import as_published

    code = as_published(lang)
    samples, result = _align_file(
        audio, transcript, _pinned(model, revision), code, "line", star, batch_size, device, dtype,
        quiet,
    )  # fmt: skip
    flagged = write_segments(samples, result.line_spans, code, audio.stem, out_dir, min_score)
    typer.echo(
        f"wrote {len(result.line_spans)} clips to {out_dir}; {len(flagged)} below score "
        f"{min_score}" + (f" (lines {', '.join(str(n + 1) for n in flagged)})" if flagged else "")
    )


@app.command("identify")
def identify_command(
    files: Annotated[list[Path], typer.Argument(help="Audio files.")],
    model: Annotated[
        str, typer.Option(help=_model_help("A language-ID model (ours or MMS-LID)"))
    ] = "builtin:lid",
    revision: Revision = None,
    top_k: Annotated[int, typer.Option(min=1, help="How many languages to give.")] = 3,
    segments: Annotated[
        bool, typer.Option(help="Also the languages of each VAD segment (code-switching).")
    ] = False,
    json_lines: Annotated[bool, typer.Option("--json", help="One JSON line per file.")] = False,
    vad: Vad = True,
    vad_threshold: VadThreshold = 0.5,
    device: Device = "auto",
    dtype: DType = "auto",
    threads: Threads = 0,
    quiet: Quiet = False,
) -> None:
    """Identify the spoken language of audio files, most probable first."""
    import json

    from polyspeech.lid.model import LidModel

    identifier = LidModel(_pinned(model, revision), device=device, precision=dtype)

    def handle(path: Path) -> None:
        found = identifier.identify(path, top_k=top_k, vad=vad, vad_threshold=vad_threshold)
        if json_lines:
            line = {"file": str(path), "languages": found.to_dict()["languages"]}
            if segments:
                line["segments"] = found.to_dict()["segments"]
            typer.echo(json.dumps(line, ensure_ascii=False))
            return
        ranked = ", ".join(f"{g.lang} {g.prob:.3f}" for g in found.languages) or "no speech"
        typer.echo(f"{path}: {ranked}")
        if segments:
            for segment in found.segments:
                best = segment.languages[0]
                typer.echo(
                    f"  {segment.start:8.2f} {segment.end:8.2f}  {best.lang} {best.prob:.3f}"
                )

    _each_file(files, handle, "identifying", quiet)


@app.command("speak")
def speak_command(
    text: Annotated[str, typer.Argument(help="What to say.")],
    output: Annotated[
        Path,
        typer.Option(
            callback=_output_file, help="The audio file to write (.wav or .flac, 16 kHz)."
        ),
    ],
    lang: Annotated[
        str | None, typer.Option(help="Language (ISO 639); espeak-ng needs it.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help=_model_help("An MMS-TTS (VITS) voice, such as facebook/mms-tts-eng")
            + " Default: espeak-ng.",
            show_default=False,
        ),
    ] = None,
    revision: Revision = None,
    speaking_rate: Annotated[float, typer.Option(help="Above 1 faster, below slower.")] = 1.0,
    seed: Annotated[int, typer.Option(help="The same seed gives the same audio.")] = 0,
    threads: Threads = 0,
) -> None:
    """Speak text into an audio file with an MMS-TTS voice or espeak-ng."""
    from polyspeech.audio import SAMPLE_RATE, write_audio
    from polyspeech.tts import speak

    samples = speak(text, lang, _pinned(model, revision), speaking_rate, seed)
    write_audio(output, samples)
    typer.echo(f"wrote {len(samples) / SAMPLE_RATE:.2f} s to {output}")


@app.command("batch")
def batch_command(
    manifest: Annotated[Path, typer.Argument(help="A JSON Lines manifest (ids unique).")],
    out: Annotated[
        Path,
        typer.Option(
            "--output-dir",
            "--out",
            callback=_output_folder,
            help="Folder for the part-*.jsonl result shards.",
        ),
    ],
    model: Annotated[
        str, typer.Option(help=_model_help("A CTC model or a speech LLM"))
    ] = "builtin:ctc",
    revision: Revision = None,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray",
            help="A Ray cluster's address (auto, ray://host:10001); without it a local Ray "
            "runtime starts.",
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Files per model batch (and per shard).")
    ] = 16,
    actors: Annotated[
        int | None,
        typer.Option(min=1, help="Model replicas (default: one per GPU, else per 2 CPUs)."),
    ] = None,
    dtype: DType = "auto",
    quiet: Quiet = False,
) -> None:
    """Transcribe a manifest on Ray: resumable, every id once in the output shards."""
    from polyspeech.data.manifest import read_manifest
    from polyspeech.scale.ray_batch import batch_transcribe

    total = sum(1 for _ in read_manifest(manifest))
    with _progress(total, "transcribing", quiet) as advance:
        summary = batch_transcribe(
            manifest, _pinned(model, revision), out, ray_address, batch_size, actors, dtype,
            lambda count: [advance() for _ in range(count)],
        )  # fmt: skip
    typer.echo(
        f"{summary['total']} files: {summary['run']} transcribed now, {summary['skipped']} "
        f"done before, {summary['errors']} with errors; results in {out}"
    )


DEFAULT_SERVED = ("builtin:ctc", "builtin:speechllm")  # serve's models unless --model names others


@app.command("serve")
def serve_command(
    model: Annotated[
        list[str] | None,
        typer.Option(
            help="A model to serve, as NAME=MODEL or MODEL (named by itself): a CTC model, a "
            f"speech LLM or an MMS-TTS voice, {MODEL_NAMES}. Repeat for several. Default: "
            f"{' and '.join(DEFAULT_SERVED)} (recognition with language ID, translation); "
            "espeak-ng's voices speak on every server.",
            show_default=False,
        ),
    ] = None,
    revision: OneRevision = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8000,
    api_key: Annotated[
        list[str] | None,
        typer.Option(
            envvar="POLYSPEECH_API_KEY",
            help="Require this key (Authorization: Bearer KEY) on /v1/; repeat for several.",
        ),
    ] = None,
    max_upload_mb: Annotated[float, typer.Option(min=0.001, help="Largest upload, MB.")] = 25.0,
    max_audio_seconds: Annotated[
        float, typer.Option(min=0.1, help="Longest audio, seconds.")
    ] = 1800.0,
    request_timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds from a request's arrival to its answer.")
    ] = 300.0,
    max_batch: Annotated[
        int, typer.Option(min=1, help="Requests computed together (1: no batching).")
    ] = 16,
    max_wait_ms: Annotated[
        float, typer.Option(min=0, help="How long a lone request waits for company, ms.")
    ] = 10.0,
    max_queue: Annotated[
        int, typer.Option(min=1, help="Requests waiting at most; more get 503 with Retry-After.")
    ] = 64,
    lm: Annotated[
        str,
        typer.Option(
            "--lm",
            help="CTC models decode with this n-gram (as transcribe's --lm); none: greedy. "
            "Beam search costs throughput (docs/guide.md, 'Serving and batch transcription').",
        ),
    ] = "none",
    device: Device = "auto",
    dtype: DType = "auto",
    threads: Threads = 0,
) -> None:
    """Serve models over HTTP: OpenAI's audio API, alignments, /v1/models, /health, /metrics."""
    import uvicorn

    from polyspeech.serve.app import ServeSettings, check_served, create_app, load_served

    settings = ServeSettings(
        max_upload_mb, max_audio_seconds, request_timeout, max_batch, max_wait_ms, max_queue,
        list(api_key or []), lm,
    )  # fmt: skip
    specs = _pinned_one(model or list(DEFAULT_SERVED), revision)
    models = dict(load_served(spec, device, dtype) for spec in specs)
    check_served(models, lm)
    uvicorn.run(create_app(models, settings), host=host, port=port, log_level="warning")


@app.command("languages")
def languages_command(
    model: Annotated[
        str, typer.Option(help=_model_help("A CTC model or a speech LLM"))
    ] = "builtin:ctc",
    revision: Revision = None,
) -> None:
    """List the languages a model offers."""
    from polyspeech import load

    for lang in load(_pinned(model, revision)).languages:
        typer.echo(lang)


def _size(count: int) -> str:
    """Bytes in decimal units, as the Hub and ``du --si`` give them."""
    if count < 1000:
        return f"{count} B"
    for unit in ("kB", "MB", "GB", "TB"):
        count /= 1000
        if count < 1000 or unit == "TB":
            break
    return f"{count:.1f} {unit}"


@app.command("download")
def download_command(
    name: Annotated[
        str,
        typer.Argument(
            help="A published model: a Hugging Face id ORG/NAME or a ModelScope id "
            "modelscope:ORG/NAME, either pinned as ID@REV."
        ),
    ],
    lang: Annotated[
        str,
        typer.Option(
            help="Comma-separated languages whose adapters to fetch too (a model of one adapter "
            "per language, such as facebook/mms-1b-all); default: the base files only."
        ),
    ] = "",
    revision: Annotated[
        str | None,
        typer.Option(
            help="Branch, tag or commit (the same as NAME@REV); default: main (master on "
            "ModelScope).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Fetch a published model into its hub's cache ahead of use, for working offline
    (HF_HUB_OFFLINE=1): one line per file fetched with its size, then the total. A MooER
    release comes with the LLM it names, its files written "LLM-ID: FILE"."""
    from polyspeech.hub import download
    from polyspeech.hub.mooer import llm_id

    if revision is not None and not revision.strip():
        raise InputError("--revision: empty; give a branch, tag or commit")
    codes = [code.strip() for code in lang.split(",") if code.strip()]
    source, fetched = download(name, codes or None, revision)
    for filename, size in fetched:
        typer.echo(f"{_size(size):>10}  {filename}")
    where = f"{source.repo_id} at {source.revision}"
    llm = llm_id(source)
    with_llm = f", with its LLM {llm}" if llm else ""
    if fetched:
        total = _size(sum(size for _, size in fetched))
        files = f"{len(fetched)} file" + ("s" if len(fetched) > 1 else "")
        typer.echo(f"fetched {files}, {total}: {where}, in {source.folder}{with_llm}")
    else:
        typer.echo(f"nothing to fetch: {where} is in the cache, in {source.folder}{with_llm}")


# What each builtin name is for (README "Models" compares them with the published ones)
BUILTIN_USES = {
    "builtin:ctc": "speech recognition (conformer CTC, an adapter per language)",
    "builtin:ctc-lm": "character n-gram LMs builtin:ctc decodes with (--lm)",
    "builtin:align": "forced alignment of any language, its text romanised",
    "builtin:lid": "spoken language identification",
    "builtin:speechllm": "recognition and translation into English (speech LLM)",
}


def _folder_languages(folder: Path) -> list[str]:
    """The languages a builtin folder holds: its adapters, its LID labels, its speech LLM's
    languages or its n-gram LMs."""
    import json

    adapters = sorted(path.name.split(".")[1] for path in folder.glob("adapter.*.safetensors"))
    if adapters:
        return adapters
    for config, key in (("config.json", "labels"), ("polyspeech.json", "languages")):
        if (folder / config).is_file():
            return sorted(json.loads((folder / config).read_text()).get(key, []))
    return sorted(path.name.split(".")[0] for path in folder.glob("*.arpa.gz"))


def _table(rows: list[tuple[str, ...]]) -> None:
    """Rows in columns as wide as their widest cell; the last column left ragged."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        typer.echo("  ".join([*cells, row[-1]]).rstrip())


@app.command("models")
def models_command() -> None:
    """List the builtin models, and the published models in the Hugging Face and ModelScope
    caches: id, revision, size on disk and the languages whose adapters are there."""
    import json

    from polyspeech.files import named_weights
    from polyspeech.hub import ASSETS, BUILTIN
    from polyspeech.hub.huggingface import hub_settings
    from polyspeech.hub.modelscope import cache_folder, cached_models

    typer.echo(
        "Builtin models: trained on synthetic speech (espeak-ng), they do not hear real voices "
        "well; for real recordings use a published model (README, Models)."
    )
    rows = [("NAME", "SIZE", "FOR", "LANGUAGES")]
    # the LMs' folder named here, not imported from polyspeech.ctc.model: that import (torch)
    # takes seconds
    for name, folder in {**BUILTIN, "builtin:ctc-lm": ASSETS / "ctc-lm"}.items():
        size = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
        config = folder / "config.json"
        # weights stored once, in another builtin's folder
        shared = named_weights(folder, json.loads(config.read_text())) if config.is_file() else None
        shown = _size(size) + (f" + {_size(shared.stat().st_size)} shared" if shared else "")
        languages = _folder_languages(folder)
        listed = "any" if languages == ["und"] else " ".join(languages)
        rows.append((name, shown, BUILTIN_USES[name], listed))
    _table(rows)
    cache = hub_settings().cache
    typer.echo(f"\nHugging Face cache {cache}:")
    cached = _hub_cache_rows(cache)
    if cached:
        _table([("ID", "REVISION", "REFS", "SIZE", "LANGUAGES"), *cached])
    else:
        typer.echo("no models (fetch one: polyspeech download ORG/NAME)")
    cache = cache_folder()
    typer.echo(f"\nModelScope cache {cache}:")
    # an older client's cache holds one revision without naming it
    cached = [
        (model.name, model.revision or "-", _size(model.size), " ".join(model.languages) or "-")
        for model in cached_models(cache)
    ]
    if cached:
        _table([("ID", "REVISION", "SIZE", "LANGUAGES"), *cached])
    else:
        typer.echo("no models (fetch one: polyspeech download modelscope:ORG/NAME)")


def _hub_cache_rows(cache: Path) -> list[tuple[str, ...]]:
    """One row per cached revision of each model in the Hugging Face cache ``cache``; what the
    scan could not read is a warning on stderr."""
    from huggingface_hub import scan_cache_dir

    from polyspeech.hub import ADAPTER

    if not cache.is_dir():
        return []
    scanned = scan_cache_dir(cache)
    for warning in scanned.warnings:
        typer.echo(f"polyspeech: warning: {' '.join(str(warning).split())}", err=True)
    rows = []
    for repo in sorted(scanned.repos, key=lambda repo: repo.repo_id):
        if repo.repo_type != "model":
            continue
        for revision in sorted(repo.revisions, key=lambda revision: revision.commit_hash):
            languages = sorted(
                {
                    found["lang"]
                    for file in revision.files
                    if (found := ADAPTER.fullmatch(file.file_name))
                }
            )
            rows.append((
                repo.repo_id, revision.commit_hash, ",".join(sorted(revision.refs)) or "-",
                _size(revision.size_on_disk), " ".join(languages) or "-",
            ))  # fmt: skip
    return rows


def _log_to_stderr() -> None:
    """Training logs (loss, dev figures) go to stderr through rich, beside the progress bar."""
    import logging

    from rich.logging import RichHandler

    handler = RichHandler(console=_stderr, show_path=False)
    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[handler])


def _run_training(quiet: bool, **arguments) -> None:
    from polyspeech.ctc.train import TrainConfig, train

    _log_to_stderr()
    config_path = arguments.pop("config")
    config = TrainConfig.from_json(config_path) if config_path else TrainConfig()
    with _progress(config.max_steps, "training", quiet) as advance:
        summary = train(config=config, on_step=lambda step, loss: advance(), **arguments)
    last = summary["history"][-1] if summary.get("history") else {}
    typer.echo(f"trained {summary.get('steps', 0)} steps; last dev CER {last.get('dev_cer')}")


TrainManifests = Annotated[
    list[Path], typer.Argument(help="Training manifests (JSON Lines), read as one.")
]
DevManifest = Annotated[
    Path, typer.Option("--dev", help="Dev manifest, scored during training (CER, or LID accuracy).")
]
TrainOut = Annotated[
    Path,
    typer.Option(
        "--output-dir",
        "--out",
        callback=_output_folder,
        help="Folder for checkpoints and the model/ folder.",
    ),
]
ConfigFile = Annotated[Path | None, typer.Option(help="JSON training config (see recipes/).")]
Resume = Annotated[bool, typer.Option(help="Continue from the checkpoint in --out.")]
Jobs = Annotated[int, typer.Option(min=1, help="Processes for feature extraction.")]
SaveDtype = Annotated[str, typer.Option(help="Weights of the written model: float32 or float16.")]


@train_app.command("ctc")
def train_ctc(
    manifests: TrainManifests,
    dev: DevManifest,
    out: TrainOut,
    config: ConfigFile = None,
    langs: Annotated[str, typer.Option(help="Comma-separated languages (default: all).")] = "",
    init: Annotated[
        str | None,
        typer.Option(
            help="Train this model further, all of it (base, adapters, output layers) and all "
            f"of its languages at once: {MODEL_NAMES}.",
            show_default=False,
        ),
    ] = None,
    revision: _revision_of("--init") = None,
    resume: Resume = False,
    jobs: Jobs = 2,
    dtype: SaveDtype = "float32",
    threads: Threads = 0,
    quiet: Quiet = False,
) -> None:
    """Train a multilingual conformer CTC model: a shared base and one adapter per language."""
    from polyspeech.text.languages import to_iso639_3

    codes = [to_iso639_3(code) for code in langs.split(",") if code.strip()] or None
    _run_training(
        train_manifests=manifests,
        dev_manifest=dev,
        out=out,
        config=config,
        langs=codes,
        init=_pinned(init, revision, "--init"),
        resume=resume,
        jobs=jobs,
        dtype=dtype,
        quiet=quiet,
    )


@train_app.command("adapter")
def train_adapter(
    manifests: TrainManifests,
    dev: DevManifest,
    out: TrainOut,
    base: Annotated[str, typer.Option(help=_model_help("The CTC model to add the language to"))],
    lang: Annotated[
        str, typer.Option(help="The new language, or one of the model's to train further.")
    ],
    revision: _revision_of("--base") = None,
    config: ConfigFile = None,
    resume: Resume = False,
    jobs: Jobs = 2,
    dtype: SaveDtype = "float32",
    threads: Threads = 0,
    quiet: Quiet = False,
) -> None:
    """Add a language to a model, or train one of its languages further (from its own adapter):
    base frozen, only that language's adapter and output layer trained."""
    from polyspeech.text.languages import as_published

    _run_training(
        train_manifests=manifests,
        dev_manifest=dev,
        out=out,
        config=config,
        langs=[as_published(lang)],
        base=_pinned(base, revision, "--base"),
        resume=resume,
        jobs=jobs,
        dtype=dtype,
        quiet=quiet,
    )


@train_app.command("speechllm")
def train_speechllm_command(
    manifests: TrainManifests,
    out: TrainOut,
    base: Annotated[
        str | None,
        typer.Option(
            help=_model_help("The speech LLM to train from (ours or MooER's)"), show_default=False
        ),
    ] = None,
    revision: _revision_of("--base") = None,
    init: Annotated[
        Path | None,
        typer.Option(help="Instead of --base: JSON config of a new speech LLM to build and train."),
    ] = None,
    dev: Annotated[
        Path | None, typer.Option("--dev", help="Dev manifest (loss, CER, BLEU).")
    ] = None,
    config: ConfigFile = None,
    resume: Resume = False,
    dtype: SaveDtype = "float32",
    threads: Threads = 0,
    quiet: Quiet = False,
) -> None:
    """Train a speech LLM's adapter and LoRA (encoder frozen) on asr/ast manifests."""
    from polyspeech.speechllm.build import NewSpeechLlmConfig
    from polyspeech.speechllm.train import SpeechLlmTrainConfig, train_speechllm

    _log_to_stderr()
    settings = SpeechLlmTrainConfig.from_json(config) if config else SpeechLlmTrainConfig()
    new = NewSpeechLlmConfig.from_json(init) if init else None
    with _progress(settings.max_steps, "training", quiet) as advance:
        summary = train_speechllm(
            manifests,
            dev,
            _pinned(base, revision, "--base"),
            out,
            settings,
            resume,
            lambda step, loss: advance(),
            new,
            dtype,
        )
    last = summary["history"][-1] if summary["history"] else {}
    typer.echo(f"trained {summary['steps']} steps; last dev {last}")


@train_app.command("lid")
def train_lid_command(
    manifests: TrainManifests,
    dev: DevManifest,
    out: TrainOut,
    base: Annotated[
        str, typer.Option(help=_model_help("The CTC model whose frozen shared base the head reads"))
    ] = "builtin:ctc",
    revision: _revision_of("--base") = None,
    config: ConfigFile = None,
    jobs: Jobs = 2,
    dtype: SaveDtype = "float32",
    threads: Threads = 0,
    quiet: Quiet = False,
) -> None:
    """Train a language-ID head on a CTC model's frozen base, for every language of the data."""
    from polyspeech.lid.train import LidTrainConfig, train_lid

    _log_to_stderr()
    settings = LidTrainConfig.from_json(config) if config else LidTrainConfig()
    with _progress(settings.max_steps, "training", quiet) as advance:
        summary = train_lid(
            manifests,
            dev,
            _pinned(base, revision, "--base"),
            out,
            settings,
            jobs,
            dtype,
            lambda step, loss: advance(),
        )
    last = summary["history"][-1]
    typer.echo(
        f"trained {summary['steps']} steps on {len(summary['labels'])} languages; dev accuracy "
        f"{last['dev_accuracy']:.3f}, first 3 s {last['dev_accuracy_3s']:.3f}"
    )


@train_app.command("lm")
def train_lm(
    manifests: TrainManifests,
    out: Annotated[
        Path,
        typer.Option(
            "--output-dir",
            "--out",
            callback=_output_folder,
            help="Folder for one <lang>.arpa.gz per language.",
        ),
    ],
    order: Annotated[int, typer.Option(min=1, help="n-gram order, in characters.")] = 6,
    langs: Annotated[str, typer.Option(help="Comma-separated languages (default: all).")] = "",
    lexicon: Annotated[
        bool, typer.Option(help="Also each of the language's 20,000 frequent words (wordfreq).")
    ] = False,
    text: Annotated[
        Path | None,
        typer.Option(
            help="Also the lines of this UTF-8 text file, in the one language of --langs."
        ),
    ] = None,
    min_count: Annotated[
        int, typer.Option(min=1, help="Leave out n-grams of 3+ characters seen fewer times.")
    ] = 1,
) -> None:
    """Character n-gram LMs (Kneser-Ney, ARPA) from manifests' texts, for ``--lm``."""
    from polyspeech.text.languages import to_iso639_3
    from polyspeech.text.ngram import train_from_manifests

    codes = [to_iso639_3(code) for code in langs.split(",") if code.strip()] or None
    counts = train_from_manifests(manifests, out, order, codes, lexicon, text, min_count)
    for lang, count in counts.items():
        typer.echo(f"{lang}: {count} lines -> {out / f'{lang}.arpa.gz'}")


# The command-line parser's own errors (an unknown option, a value out of range): click's
# ClickException, which typer re-exports only through BadParameter's ancestry.
_ParserError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def main() -> None:
    """Entry point of the ``polyspeech`` console script: every problem the user can fix, a bad
    option as much as a bad file, is one line on stderr and exit status 2."""
    try:
        code = app(standalone_mode=False)
    except _ParserError as error:
        if type(error).__name__ == "NoArgsIsHelpError":  # no arguments at all: the help
            print(error.format_message())
            sys.exit(0)
        _fail(" ".join(error.format_message().split()))
    except PolyspeechError as error:
        _fail(str(error))
    except (KeyboardInterrupt, typer.Abort):
        print("polyspeech: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str) -> None:
    print(f"polyspeech: error: {message}", file=sys.stderr)
    sys.exit(2)
