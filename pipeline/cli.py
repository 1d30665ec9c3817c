"""Command line: `python -m pipeline diarize ...` (corpus run on Ray), `evaluate` (score a run),
`link-speakers` (global speaker ids across recordings), `export` (JSON, CSV, ELAN, Praat, Audacity,
WebVTT, SRT), `report` (one HTML page), `fetch-sample`.

Every subcommand is a thin layer over a library function (`pipeline.run_corpus`,
`pipeline.scoring.evaluate.evaluate_run`,
`pipeline.sample.fetch_sample`), so notebooks and Ray jobs get the same behaviour. A user mistake ends
in one `error: ...` line and exit code 2 (`--debug` shows the traceback); Ctrl-C prints the command
that continues the run."""

from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib
import os
import re
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from typing import Sequence

from pipeline.console import counted
from pipeline.corpus.options import RunOptions
from pipeline.errors import PipelineError, causes
from pipeline.io.storage import add_storage_arguments, storage_options_from_args
from pipeline.signals import Terminated, interrupt_on_sigterm

PROG = "python -m pipeline"
DESCRIPTION = (
    "Who spoke when, for every recording of a speech corpus: diarize manifests on Ray, score, link "
    "speakers across recordings, export and report."
)
EVALUATE_PRESET = "fair"  # what `diarize --evaluate` scores with


class Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line naming `--help` (exit 2), like every other mistake; an
    unknown option names the nearest one and the subcommand's `--help`."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")

    def parse_args(self, args=None, namespace=None):
        parsed, unknown = self.parse_known_args(args, namespace)
        if unknown:
            subcommands = self._subparsers._group_actions[0].choices if self._subparsers else {}  # noqa: SLF001
            where = subcommands.get(getattr(parsed, "command", None), self)
            flags = [flag for action in where._actions for flag in action.option_strings]  # noqa: SLF001
            hints = [
                close[0]
                for given in (word.split("=")[0] for word in unknown if word.startswith("-"))
                if (close := difflib.get_close_matches(given, flags, n=1, cutoff=0.6))
            ]
            hint = f"; did you mean {', '.join(hints)}?" if hints else ""
            where.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")
        return parsed


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("corpus-diarization")
    except PackageNotFoundError:
        return "unknown (not installed)"


def common_options() -> argparse.ArgumentParser:
    """Console and error options every subcommand takes."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("console")
    group.add_argument(
        "--quiet", "-q", action="store_true", help="no progress or dashboard line; errors and the summary only"
    )
    group.add_argument("--verbose", "-v", action="store_true", help="show Ray's own logs on the console too")
    group.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="level of the run's log file (default: %(default)s)",
    )
    group.add_argument(
        "--log-file",
        default=None,
        metavar="PATH",
        help="where Ray's and the pipeline's logs go (default: OUTPUT/logs/ for a local output, else the temp folder)",
    )
    group.add_argument(
        "--progress-interval",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="seconds between progress lines when stderr is not a terminal (default: %(default)s)",
    )
    group.add_argument("--debug", action="store_true", help="show the traceback of a user error")
    return common


def linking_threshold_argument(text: str) -> float | str:
    """`link-speakers --threshold`: a number, or 'estimate'."""
    from pipeline.linking import ESTIMATE

    if text.strip().lower() == ESTIMATE:
        return ESTIMATE
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a number nor {ESTIMATE!r}") from None


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = Parser(prog=prog, description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"corpus-diarization {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    common = common_options()

    diarize = commands.add_parser(
        "diarize", parents=[common], help="label every row of one or more manifests with Ray Data"
    )
    RunOptions.add_arguments(diarize)
    diarize.add_argument("--fail-on-error", action="store_true", help="exit 1 when any input row is an error row")
    diarize.add_argument(
        "--evaluate",
        action="store_true",
        help=f"score against the rows' rttm_filepath "
        f"(NeMo's '{EVALUATE_PRESET}' preset: DER, collar 0.25 s, UEM honoured)",
    )
    diarize.add_argument("--print-segments", action="store_true", help="print every recording's speaker turns")
    diarize.add_argument("--report", action="store_true", help="write OUTPUT/report.html once the run is done")
    diarize.set_defaults(handler=run_diarize)

    evaluate = commands.add_parser(
        "evaluate", parents=[common], help="score a run's RTTMs against the manifests' references"
    )
    evaluate.add_argument("--output", required=True, metavar="URI", help="the run's output folder")
    evaluate.add_argument(
        "--manifest", nargs="+", default=None, metavar="URI", help="manifests with rttm_filepath (default: the run's)"
    )
    evaluate.add_argument(
        "--preset",
        choices=["full", "fair", "forgiving"],
        default="fair",
        help="NeMo's scoring presets (default: %(default)s)",
    )
    evaluate.add_argument(
        "--collar",
        type=float,
        default=None,
        help="seconds around each reference boundary, md-eval/NeMo meaning (default: the preset's)",
    )
    evaluate.add_argument("--skip-overlap", action="store_true", help="do not score overlapped speech")
    evaluate.add_argument(
        "--global",
        dest="global_",
        action="store_true",
        help="score the linked global RTTMs (link-speakers) as one corpus-wide timeline against references "
        "whose speaker names are global; also purity and coverage of the links",
    )
    evaluate.add_argument(
        "--address", default=None, help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)"
    )
    add_storage_arguments(evaluate)
    evaluate.set_defaults(handler=run_evaluate)

    from pipeline.linking import DEFAULT_MIN_SPEECH_SECONDS

    link = commands.add_parser(
        "link-speakers",
        parents=[common],
        help="give the same voice the same global speaker id across the run's recordings",
    )
    link.add_argument("--output", required=True, metavar="URI", help="the run's output folder")
    link.add_argument(
        "--threshold",
        type=linking_threshold_argument,
        default=None,
        metavar="T|estimate",
        help="mean cosine similarity at which two groups of speakers merge, or 'estimate': learnt from the "
        "similarities of the speakers of one recording (default: the linking_threshold the run's model "
        "declares, chosen on the dev split, else estimated)",
    )
    link.add_argument(
        "--min-speech-seconds",
        type=float,
        default=DEFAULT_MIN_SPEECH_SECONDS,
        help="speakers with less speech get no global id (default: %(default)s)",
    )
    link.add_argument(
        "--fresh", action="store_true", help="forget the global ids of an earlier linking and link from scratch"
    )
    link.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    add_storage_arguments(link)
    link.set_defaults(handler=run_link_speakers)

    from pipeline.export.formats import FORMATS

    export = commands.add_parser(
        "export",
        parents=[common],
        help="write a run's speaker turns as JSON, CSV, ELAN, Praat, Audacity, WebVTT or SRT files",
    )
    export.add_argument("--output", required=True, metavar="URI", help="the run's output folder")
    export.add_argument(
        "--format",
        required=True,
        metavar="FORMAT[,FORMAT...]|all",
        help=f"one file per recording in each format ({', '.join(FORMATS)}; nemo-manifest: one training "
        "manifest of single-speaker segments), or all",
    )
    export.add_argument(
        "--dest", default=None, metavar="URI", help="folder for the files (default: OUTPUT/export/FORMAT)"
    )
    export.add_argument(
        "--global", dest="global_ids", action="store_true", help="speakers by their global ids (after link-speakers)"
    )
    export.add_argument(
        "--min-segment-seconds", type=float, default=1.0, help="nemo-manifest: shortest segment (default: %(default)s)"
    )
    export.add_argument(
        "--max-segment-seconds",
        type=float,
        default=20.0,
        help="nemo-manifest: longer single-speaker stretches are cut into equal pieces (default: %(default)s)",
    )
    add_storage_arguments(export)
    export.set_defaults(handler=run_export)

    report = commands.add_parser(
        "report", parents=[common], help="write OUTPUT/report.html: summary, errors, DER, who spoke when"
    )
    report.add_argument("--output", required=True, metavar="URI", help="the run's output folder")
    report.add_argument(
        "--dest", default=None, metavar="URI", help="where to write the page (default: OUTPUT/report.html)"
    )
    report.add_argument(
        "--no-score",
        action="store_true",
        help="do not score against references (uses eval/ when a previous evaluate wrote it)",
    )
    add_storage_arguments(report)
    report.set_defaults(handler=run_report)

    manifest = commands.add_parser(
        "manifest",
        parents=[common],
        help="write a NeMo manifest for audio that has none (folders, globs, files), references paired by name",
    )
    manifest.add_argument(
        "audio", nargs="+", metavar="AUDIO", help="audio files, folders (searched at any depth) or globs"
    )
    manifest.add_argument(
        "--output",
        dest="manifest_output",
        metavar="URI",
        required=True,
        help="the manifest to write: *.jsonl (or .jsonl.gz), local or URI",
    )
    manifest.add_argument(
        "--rttm", nargs="+", default=[], metavar="URI", help="reference RTTMs (files, folders, globs), paired by name"
    )
    manifest.add_argument("--uem", nargs="+", default=[], metavar="URI", help="scoring UEMs, paired the same way")
    manifest.add_argument("--num-speakers", type=int, default=None, help="every row's known speaker count")
    manifest.add_argument("--force", action="store_true", help="replace an existing --output")
    add_storage_arguments(manifest)
    manifest.set_defaults(handler=run_manifest)

    fetch = commands.add_parser("fetch-sample", parents=[common], help="download the small sample corpus")
    fetch.add_argument("--dest", required=True, help="folder to write the sample into")
    fetch.set_defaults(handler=run_fetch_sample)

    # Listed for --help only: `main` hands every argument after it to Ray's `ray job submit` (`pipeline.submit`).
    commands.add_parser(
        "submit",
        add_help=False,
        help="`ray job submit` with its own options (see `submit --help`), a missing Ray token told in one line",
    )
    return parser


def run_diarize(args: argparse.Namespace) -> int:
    from pipeline.corpus.preflight import check_run

    run = RunOptions.from_args(args)
    check_run(run)  # a mistake is told before torch and Ray load (run_corpus checks again)
    from pipeline.corpus import run_corpus
    from pipeline.corpus.outputs import OutputLayout

    summary = run_corpus(run)
    if run.dry_run:
        print_dry_run(summary)
        return 1 if args.fail_on_error and summary["errors"] else 0
    layout = OutputLayout(run.output, run.storage_options)
    if args.print_segments:
        print_segments(layout)
    if args.evaluate:
        from pipeline.scoring.metrics import SCORING_PRESETS

        preset = SCORING_PRESETS[EVALUATE_PRESET]
        print_scores(
            run.output, run.manifests, preset["collar"], preset["skip_overlap"], run.storage_options, run.address
        )
    print_summary(summary, layout)
    if args.report:
        from pipeline.export.report import write_report

        print(f"report: {write_report(run.output, storage_options=run.storage_options)}")
    return 1 if args.fail_on_error and summary["errors"] else 0


def print_dry_run(report: dict) -> None:
    print(
        f"dry run: {counted(report['input_rows'], 'input row')} ({report['already_recorded']} already recorded): "
        f"{report['ok']} ok, {counted(report['errors'], 'error')}\n"
        f"{report['audio_hours']:.2f} h of audio in the ok rows"
        + (
            f" ({counted(report['ok_rows_without_duration'], 'ok row')} without a duration; --check-audio reads it)"
            if report["ok_rows_without_duration"]
            else ""
        )
        + f"\nestimated model time: {report['estimated_actor_hours']:.2f} actor hours "
        f"(at {report['audio_seconds_per_actor_second_assumed']:.0f} audio s per actor s)"
    )
    for reason, count in report["errors_by_reason"].items():
        print(f"  {count:>8}  {reason}")
    for example in report["error_examples"]:
        print(f"  error: {example}")


def print_segments(layout) -> None:
    segments = layout.read_table("segments").sort_by([("uniq_id", "ascending"), ("start", "ascending")])
    current = None
    for row in segments.to_pylist():
        if row["uniq_id"] != current:
            current = row["uniq_id"]
            print(f"\n{current}  ({row['audio_filepath']})")
        print(f"  {row['start']:9.3f} {row['end']:9.3f}  {row['speaker']}")


def print_scores(
    output: str,
    manifests: Sequence[str] | None,
    collar: float,
    skip_overlap: bool,
    options: dict,
    address: str | None = None,
) -> None:
    from pipeline.scoring.evaluate import evaluate_run, format_table

    per_recording, overall = evaluate_run(
        output, manifests, collar=collar, skip_overlap=skip_overlap, storage_options=options, address=address
    )
    if not per_recording:
        print("\nevaluate: no ok row names a reference rttm_filepath; nothing to score")
        return
    print(f"\nDER (collar {collar} s around reference boundaries, overlap {'skipped' if skip_overlap else 'scored'})")
    print(format_table(per_recording, overall))


def run_evaluate(args: argparse.Namespace) -> int:
    from pipeline.scoring.metrics import SCORING_PRESETS

    preset = SCORING_PRESETS[args.preset]
    collar = preset["collar"] if args.collar is None else args.collar
    skip_overlap = preset["skip_overlap"] or args.skip_overlap
    if args.global_:
        from pipeline.scoring.evaluate import evaluate_global_run, format_global

        _, overall = evaluate_global_run(
            args.output,
            args.manifest,
            collar=collar,
            skip_overlap=skip_overlap,
            storage_options=storage_options_from_args(args),
            address=args.address,
        )
        print(
            f"global scoring (collar {collar} s around reference boundaries, "
            f"overlap {'skipped' if skip_overlap else 'scored'})"
        )
        print(format_global(overall))
        return 0
    print_scores(args.output, args.manifest, collar, skip_overlap, storage_options_from_args(args), args.address)
    return 0


def run_link_speakers(args: argparse.Namespace) -> int:
    from pipeline.linking.run import link_run

    summary = link_run(
        args.output,
        threshold=args.threshold,
        min_speech_seconds=args.min_speech_seconds,
        storage_options=storage_options_from_args(args),
        address=args.address,
        fresh=args.fresh,
    )
    print(
        f"{counted(summary['speakers'], 'speaker')} of {counted(summary['recordings'], 'recording')}: "
        f"{summary['linked']} linked into {counted(summary['global_speakers'], 'global speaker')} "
        f"({summary['new_global_speakers']} new), {summary['unlinked']} unlinked "
        f"(< {summary['min_speech_seconds']} s of speech)\n"
        + (
            f"{counted(summary['kept_links'], 'link')} kept from the earlier linking, "
            f"{counted(summary['attached_to_existing'], 'new speaker')} joined existing global speakers\n"
            if summary["kept_links"]
            else ""
        )
        + f"threshold {summary['threshold']} ({summary['threshold_source']}), "
        f"{counted(summary['global_rttms_written'], 'global RTTM')} written, "
        f"{summary['wall_seconds']:.1f} s\n"
        f"outputs: {args.output.rstrip('/')}  "
        "(speaker_links.parquet, global_speakers.parquet, global_rttm/, linking.json)"
    )
    return 0


def print_summary(summary: dict, layout) -> None:
    import pyarrow.compute as pc

    print(
        f"\n{counted(summary['input_rows'], 'input row')}: {summary['ok']} ok, {counted(summary['errors'], 'error')} "
        f"({summary['skipped_by_resume']} already done, {summary['processed_this_run']} processed this run"
        + (f", {counted(retried, 'error row')} of them retried" if (retried := summary.get("retried_errors")) else "")
        + ")\n"
        # this run's audio and time: a resume's earlier audio was labelled in other runs' time
        f"{summary['audio_hours_this_run'] * 3600:.1f} s of audio in {summary['wall_seconds']:.1f} s "
        f"({summary['audio_seconds_per_wall_second']:.1f} audio s per wall s)\n"
        f"outputs: {layout.uri}  (rttm/, segments/, speakers/, recordings/, manifest.jsonl, summary.json)"
    )
    if summary.get("speakers", {}).get("note"):
        print(f"speakers: {summary['speakers']['note']}")
    for note in summary.get("notes", []):
        print(f"note: {note}")
    if summary["errors"]:
        errors = layout.read_table("recordings").filter(pc.field("status") == "error").to_pylist()
        for row in errors[:20]:
            print(f"  error: {row['error']}")
        if len(errors) > 20:
            print(f"  ... {len(errors) - 20} more in recordings/ (status == 'error')")


def run_export(args: argparse.Namespace) -> int:
    from pipeline.export.formats import export_run

    written = export_run(
        args.output,
        args.format,
        args.dest,
        storage_options_from_args(args),
        global_ids=args.global_ids,
        min_segment_seconds=args.min_segment_seconds,
        max_segment_seconds=args.max_segment_seconds,
    )
    folders: dict[str, int] = {}
    for uri in written:
        folders[os.path.dirname(uri)] = folders.get(os.path.dirname(uri), 0) + 1
    for folder, count in folders.items():
        print(f"{counted(count, 'file')} in {folder}")
    return 0


def run_report(args: argparse.Namespace) -> int:
    from pipeline.export.report import write_report

    options = storage_options_from_args(args)
    print(f"report: {write_report(args.output, args.dest, storage_options=options, score=not args.no_score)}")
    return 0


def run_manifest(args: argparse.Namespace) -> int:
    from pipeline.console import CONSOLE
    from pipeline.io.audio_listing import manifest_for_audio

    output = args.manifest_output
    manifest = manifest_for_audio(
        args.audio, output, args.rttm, args.uem, args.num_speakers, args.force, storage_options_from_args(args)
    )
    references = f"{manifest.with_reference('rttm')} with an RTTM, {manifest.with_reference('uem')} with a UEM"
    print(f"manifest: {counted(len(manifest.audio), 'recording')} ({references}) -> {output}")
    for kind in ("rttm", "uem"):
        if unpaired := manifest.unpaired(kind):
            print(
                f"warning: {counted(len(unpaired), f'{kind.upper()} file')} named after no audio file, "
                f"e.g. {unpaired[0]}",
                file=CONSOLE.out,
            )
    if manifest.beside:
        found = " and ".join(counted(count, f"{kind.upper()} file") for kind, count in manifest.beside.items())
        flags = " ".join(f"--{kind} {' '.join(map(shlex.quote, args.audio))}" for kind in manifest.beside)
        print(f"note: {found} lie among the audio, not paired; to pair them by name, add: {flags}", file=CONSOLE.out)
    print(f"next: python -m pipeline diarize --manifest {shlex.quote(output)} --output OUTPUT")
    return 0


def run_fetch_sample(args: argparse.Namespace) -> int:
    from pipeline.sample import fetch_sample

    fetch_sample(args.dest)
    return 0


def user_error(error: BaseException) -> tuple[str, int] | None:
    """(the one line, the exit code) of a known failure or of a mistake the user can fix, or None for
    a bug (which keeps its traceback)."""
    for cause in causes(error):  # Ray wraps an actor's error (no GPU) in its own errors
        if isinstance(cause, PipelineError):
            return str(cause), cause.exit_code
    # An actor's constructor error reaches the driver only as text (Ray's ActorDiedError keeps the
    # remote traceback, not the exception): its last line names our error's class.
    for line in reversed(str(error).splitlines()):
        known = re.match(r"\s*(pipeline(?:\.\w+)+)\.(\w+): (.*)", line)
        if known:
            kind = getattr(importlib.import_module(known[1]), known[2], None)
            if isinstance(kind, type) and issubclass(kind, PipelineError):
                return known[3], kind.exit_code
    message = storage_error(error)
    return (message, 2) if message is not None else None


def storage_error(error: BaseException) -> str | None:
    """The line for an object-store or filesystem failure the user can fix."""
    import aiohttp  # here, not at start-up: only a failed run pays for them
    import botocore.exceptions

    if isinstance(
        error,
        (
            botocore.exceptions.NoCredentialsError,
            botocore.exceptions.PartialCredentialsError,
            botocore.exceptions.CredentialRetrievalError,
        ),
    ):
        return (
            f"no usable AWS credentials ({error}): pass --profile NAME or set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; "
            "--anonymous for a public bucket; --endpoint-url for a non-AWS S3 store"
        )
    if isinstance(error, botocore.exceptions.ProfileNotFound):
        return f"{error}: name a profile of ~/.aws/config with --profile, or leave --profile out"
    if isinstance(
        error,
        (
            botocore.exceptions.EndpointConnectionError,
            botocore.exceptions.ConnectTimeoutError,
            aiohttp.ClientConnectorError,
        ),
    ):
        return f"cannot reach the object store ({error}): check --endpoint-url"
    if isinstance(error, PermissionError):
        return f"access denied: {error}: check the credentials (--profile) or pass --anonymous for a public bucket"
    if isinstance(error, (FileNotFoundError, IsADirectoryError, NotADirectoryError)):
        where = error.filename or str(error)
        hint = (
            "; for S3 check the bucket name and --endpoint-url"
            if "s3" in str(where) or "bucket" in str(error).lower()
            else ""
        )
        return f"not found: {where}{hint}" if error.filename else f"{error}{hint}"
    return None


def resume_command(prog: str, argv: Sequence[str]) -> str:
    """The command line that continues an interrupted run."""
    argv = list(argv)
    if "diarize" in argv[:1] and "--resume" not in argv:
        argv.append("--resume")
    return " ".join([prog, *map(shlex.quote, argv)])


def default_log_file(args: argparse.Namespace) -> str:
    from pipeline.io.storage import is_local

    output = getattr(args, "output", None)
    name = f"{args.command}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log"
    logs = os.path.join(output.removeprefix("file://"), "logs") if output and is_local(output) else None
    if logs is not None and not os.path.islink(logs):  # never written through a link out of the output
        return os.path.join(logs, name)
    import tempfile

    return os.path.join(tempfile.gettempdir(), "corpus-diarization", name)


def main(argv: Sequence[str] | None = None, prog: str = PROG, command: str | None = None) -> int:
    """`command` fixes the subcommand (the jobs/ entry points, whose `--help` names `prog`)."""
    import logging

    from pipeline.console import CONSOLE, capture_stderr

    argv = list(sys.argv[1:] if argv is None else argv)
    if command is None and argv[:1] == ["submit"]:
        from pipeline.submit import submit

        return submit(argv[1:])
    parser = build_parser(prog)
    if command is not None:
        subcommand = parser._subparsers._group_actions[0].choices[command]  # noqa: SLF001 - argparse keeps them here
        subcommand.prog = prog
        args = subcommand.parse_args(argv)
        args.command = command
        shown = [command, *argv]
    else:
        args = parser.parse_args(argv)
        shown = argv
    CONSOLE.quiet, CONSOLE.verbose, CONSOLE.progress_interval = args.quiet, args.verbose, args.progress_interval
    log_file = args.log_file or default_log_file(args)
    # A run refused before it touched its output (pre-flight) must leave nothing there: the log of a
    # new output is written aside and moved into OUTPUT/logs once the run has made the output.
    destination = None
    if (
        not args.log_file
        and not args.verbose
        and getattr(args, "output", None)
        and log_file.startswith(args.output.removeprefix("file://"))
        and not os.path.exists(os.path.dirname(os.path.dirname(log_file)))
    ):
        destination, log_file = (
            log_file,
            os.path.join(tempfile.gettempdir(), "corpus-diarization", os.path.basename(log_file)),
        )
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    continue_with = resume_command(PROG if command else prog, shown)
    interrupt_on_sigterm()  # SIGTERM ends a run as Ctrl-C does

    try:
        with contextlib.nullcontext() if args.verbose else capture_stderr(log_file) as console:
            CONSOLE.stream = console
            CONSOLE.log_file = None if args.verbose else log_file
            try:
                code = args.handler(args)
                sys.stdout.flush()
                return code
            except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM (`Terminated`)
                print("\ninterrupted: committed recordings are kept; continue with:", file=CONSOLE.out)
                print(f"  {continue_with}", file=CONSOLE.out, flush=True)
                return 143 if isinstance(stop, Terminated) else 130
            except Exception as error:  # noqa: BLE001 - sorted into user mistakes (one line) and bugs (traceback)
                known = user_error(error)
                if known is None or args.debug:
                    traceback.print_exc(file=CONSOLE.out)
                if known is not None:
                    message, code = known
                    print(f"error: {message}", file=CONSOLE.out, flush=True)
                    return code
                if CONSOLE.log_file:
                    print(f"(Ray's and the pipeline's logs: {CONSOLE.log_file})", file=CONSOLE.out, flush=True)
                return 1
            finally:
                CONSOLE.stream = None
    finally:
        if destination and os.path.isdir(os.path.dirname(os.path.dirname(destination))):
            move_log(log_file, destination)


def move_log(log_file: str, destination: str) -> None:
    """The run's log into OUTPUT/logs once the run made the output; where that fails (a full disk),
    it stays where it is, whole, and one line says where."""
    try:
        os.makedirs(os.path.dirname(destination), exist_ok=True)
        shutil.move(log_file, destination)
    except OSError as error:
        with contextlib.suppress(OSError):
            if os.path.exists(log_file) and os.path.exists(destination):
                os.unlink(destination)  # a partial copy: the whole log is still at log_file
        print(
            f"(the run's log stays at {log_file}: {os.strerror(error.errno) if error.errno else error})",
            file=sys.stderr,
        )


if __name__ == "__main__":
    sys.exit(main())
