"""Command line: `python -m pipeline diarize ...` (corpus run on Ray), `evaluate` (score a run), `fetch-sample`.

Every subcommand is a thin layer over a library function (`pipeline.run_corpus`, `pipeline.evaluate.evaluate_run`,
`pipeline.sample.fetch_sample`), so notebooks and Ray jobs get the same behaviour."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    diarize = commands.add_parser("diarize", help="label every row of one or more manifests with Ray Data")
    diarize.add_argument("--manifest", nargs="+", required=True, metavar="URI", help="manifest URIs or globs (s3://, gs://, file://, paths)")
    diarize.add_argument("--output", required=True, metavar="URI", help="output folder (local or object store)")
    diarize.add_argument("--model", default="default",
                         help="registered name, package.module:factory, or an installed corpus_diarization.models plug-in (default: %(default)s)")
    diarize.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE", type=model_argument,
                         help="option passed to the model's factory (repeatable; VALUE read as JSON, else a string)")
    diarize.add_argument("--checkpoint", default=None, metavar="PATH|URI", help="weights for the model, passed to its factory as checkpoint=")
    diarize.add_argument("--batch-size", type=int, default=4, help="recordings per model batch (default: %(default)s)")
    diarize.add_argument("--num-actors", default="1", metavar="N|MIN,MAX", help="model actor pool size (default: %(default)s)")
    diarize.add_argument("--gpus-per-actor", type=float, default=0.0, help="GPUs per model actor; >0 requires CUDA (default: CPU)")
    diarize.add_argument("--actor-cpus", type=float, default=0.5, help="CPUs reserved per model actor (default: %(default)s)")
    diarize.add_argument("--actor-threads", type=int, default=None, help="torch threads per CPU model actor (default: the node's cores / pool size)")
    diarize.add_argument("--resume", action="store_true", help="skip inputs already recorded in --output")
    diarize.add_argument("--fail-on-error", action="store_true", help="exit 1 when any input row is an error row")
    diarize.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    diarize.add_argument("--endpoint-url", default=None, help="S3 endpoint URL (default: AWS_ENDPOINT_URL / AWS's)")
    diarize.add_argument("--anonymous", action="store_true", help="read object storage without credentials")
    diarize.add_argument("--profile", default=None, help="AWS profile for object storage")
    diarize.add_argument("--max-num-speakers", type=int, default=8, help="upper bound when a row gives no num_speakers")
    diarize.add_argument("--postprocessing-yaml", default=None, help="NeMo post-processing YAML (parameters: onset, offset, ...)")
    diarize.add_argument("--evaluate", action="store_true", help="score against the rows' rttm_filepath (DER, collar 0.25 s, UEM honoured)")
    diarize.add_argument("--print-segments", action="store_true", help="print every recording's speaker turns")
    diarize.add_argument("--dry-run", action="store_true", help="read and check every row (fields, ids, audio exists); report rows, hours, errors and cost; write nothing")
    diarize.add_argument("--check-audio", action="store_true", help="with --dry-run: also read each file's header for its duration")
    diarize.set_defaults(handler=run_diarize)

    evaluate = commands.add_parser("evaluate", help="score a run's RTTMs against the manifests' references")
    evaluate.add_argument("--output", required=True, metavar="URI", help="the run's output folder")
    evaluate.add_argument("--manifest", nargs="+", default=None, metavar="URI", help="manifests with rttm_filepath (default: the run's)")
    evaluate.add_argument("--preset", choices=["full", "fair", "forgiving"], default="fair", help="NeMo's scoring presets (default: %(default)s)")
    evaluate.add_argument("--collar", type=float, default=None, help="seconds around each reference boundary, md-eval/NeMo meaning (default: the preset's)")
    evaluate.add_argument("--skip-overlap", action="store_true", help="do not score overlapped speech")
    evaluate.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    evaluate.add_argument("--endpoint-url", default=None)
    evaluate.add_argument("--anonymous", action="store_true")
    evaluate.add_argument("--profile", default=None)
    evaluate.set_defaults(handler=run_evaluate)

    fetch = commands.add_parser("fetch-sample", help="download the small sample corpus")
    fetch.add_argument("--dest", required=True, help="folder to write the sample into")
    fetch.set_defaults(handler=run_fetch_sample)
    return parser


def model_argument(text: str) -> tuple[str, object]:
    """`key=value` of --model-arg; the value is JSON when it parses (`4`, `0.5`, `true`, `[1, 2]`), else the text."""
    import json

    key, separator, value = text.partition("=")
    if not separator or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def run_diarize(args: argparse.Namespace) -> int:
    from .corpus import run_corpus
    from .corpus.outputs import OutputLayout
    from .corpus.storage import storage_options

    options = storage_options(args.endpoint_url, args.anonymous, args.profile)
    summary = run_corpus(
        args.manifest,
        args.output,
        model=args.model,
        batch_size=args.batch_size,
        num_actors=args.num_actors,
        gpus_per_actor=args.gpus_per_actor,
        actor_cpus=args.actor_cpus,
        actor_threads=args.actor_threads,
        resume=args.resume,
        storage_options=options,
        max_num_speakers=args.max_num_speakers,
        postprocessing_yaml=args.postprocessing_yaml,
        address=args.address,
        model_kwargs=dict(args.model_arg),
        checkpoint=args.checkpoint,
        dry_run=args.dry_run,
        check_audio=args.check_audio,
    )
    if args.dry_run:
        print_dry_run(summary)
        return 1 if args.fail_on_error and summary["errors"] else 0
    layout = OutputLayout(args.output, options)
    if args.print_segments:
        print_segments(layout)
    if args.evaluate:
        print_scores(args.output, args.manifest, 0.25, False, options, args.address)
    print_summary(summary, layout)
    return 1 if args.fail_on_error and summary["errors"] else 0


def print_dry_run(report: dict) -> None:
    print(
        f"dry run: {report['input_rows']} input rows ({report['already_recorded']} already recorded): "
        f"{report['ok']} ok, {report['errors']} errors\n"
        f"{report['audio_hours']:.2f} h of audio in the ok rows"
        + (f" ({report['ok_rows_without_duration']} ok rows give no duration; --check-audio reads it)" if report["ok_rows_without_duration"] else "")
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


def print_scores(output: str, manifests: Sequence[str] | None, collar: float, skip_overlap: bool, options: dict,
                 address: str | None = None) -> None:
    from .evaluate import evaluate_run, format_table

    per_recording, overall = evaluate_run(output, manifests, collar=collar, skip_overlap=skip_overlap, storage_options=options,
                                          address=address)
    if not per_recording:
        print("\nevaluate: no ok row names a reference rttm_filepath; nothing to score")
        return
    print(f"\nDER (collar {collar} s around reference boundaries, overlap {'skipped' if skip_overlap else 'scored'})")
    print(format_table(per_recording, overall))


def run_evaluate(args: argparse.Namespace) -> int:
    from .corpus.storage import storage_options
    from .scoring import SCORING_PRESETS

    preset = SCORING_PRESETS[args.preset]
    collar = preset["collar"] if args.collar is None else args.collar
    skip_overlap = preset["skip_overlap"] or args.skip_overlap
    print_scores(args.output, args.manifest, collar, skip_overlap, storage_options(args.endpoint_url, args.anonymous, args.profile),
                 args.address)
    return 0


def print_summary(summary: dict, layout) -> None:
    import pyarrow.compute as pc

    print(
        f"\n{summary['input_rows']} input rows: {summary['ok']} ok, {summary['errors']} errors "
        f"({summary['skipped_by_resume']} already done, {summary['processed_this_run']} processed this run)\n"
        f"{summary['audio_hours'] * 3600:.1f} s of audio in {summary['wall_seconds']:.1f} s "
        f"({summary['audio_seconds_per_wall_second']:.1f} audio s per wall s)\n"
        f"outputs: {layout.uri}  (rttm/, segments/, recordings/, manifest.jsonl, summary.json)"
    )
    if summary["errors"]:
        errors = layout.read_table("recordings").filter(pc.field("status") == "error").to_pylist()
        for row in errors[:20]:
            print(f"  error: {row['error']}")
        if len(errors) > 20:
            print(f"  ... {len(errors) - 20} more in recordings/ (status == 'error')")


def run_fetch_sample(args: argparse.Namespace) -> int:
    from .sample import fetch_sample

    fetch_sample(args.dest)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code = args.handler(args)
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
