"""Global vs per-recording DER, and purity and coverage of the links, on simulated corpora whose
speakers recur (`benchmarks.splits.RECURRING_SPLITS`: 30 conversations of 60-120 s, 2-4 speakers
each from a pool of 12 LibriSpeech speakers of the split, 16 kHz and 8 kHz files, speaker gains
within ±U(0, 8) dB per conversation).

    # choose on dev:
    python benchmarks/speaker_linking_accuracy.py --split dev --model ge2e --thresholds 0.70 0.72 ... 0.90
    # report on test at the model's default (its declared threshold, else one learnt from the corpus):
    python benchmarks/speaker_linking_accuracy.py --split test --model ge2e
    python benchmarks/speaker_linking_accuracy.py --split test --model ge2e --thresholds estimate

Each split's corpus is written once under `--work`, diarized once by a corpus run on a local Ray
(`--model`, default `ge2e`), then linked from scratch (`link_run(fresh=True)`) and
scored (`evaluate_global_run`, collar 0.25 s, overlap scored) at every threshold."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

from pipeline.cli import linking_threshold_argument
from pipeline.corpus.options import model_argument

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=["dev", "test"], required=True)
    parser.add_argument("--work", default="/tmp/speaker-linking")
    parser.add_argument("--model", default="ge2e")
    parser.add_argument("--model-arg", action="append", default=[], type=model_argument, metavar="KEY=VALUE")
    parser.add_argument(
        "--thresholds",
        type=linking_threshold_argument,
        nargs="+",
        default=None,
        help="numbers, or 'estimate' (learnt from the run's own speakers); default: the linking_threshold the "
        "model declares, else estimated",
    )
    parser.add_argument("--min-speech-seconds", type=float, default=None)
    parser.add_argument("--collar", type=float, default=0.25)
    parser.add_argument("--json", default=None, help="append the results as JSON lines to this file")
    parser.add_argument("--seed", type=int, default=None, help="another corpus of the split (default: the split's own)")
    parser.add_argument("--pool", type=int, default=None, help="speakers the corpus draws from (default: 12)")
    args = parser.parse_args(argv)
    model_kwargs = dict(args.model_arg)

    import pipeline
    from benchmarks.splits import RECURRING_SPLITS, recurring_manifest, recurring_pool
    from pipeline.corpus.ray_session import connect_ray
    from pipeline.errors import UsageError
    from pipeline.linking.run import DEFAULT_MIN_SPEECH_SECONDS, link_run
    from pipeline.scoring.evaluate import evaluate_global_run

    own = RECURRING_SPLITS[args.split]
    spec = dataclasses.replace(
        own,
        seed=own.seed if args.seed is None else args.seed,
        pool_size=own.pool_size if args.pool is None else args.pool,
    )
    corpus = "" if spec == own else f"-{spec.seed}x{spec.pool_size}"  # the split's own corpus keeps its old folder
    manifest = recurring_manifest(args.split, os.path.join(args.work, "corpora"), spec)
    arguments = "".join(f"-{key}={value}" for key, value in sorted(model_kwargs.items()))
    output = os.path.join(args.work, "runs", f"{args.split}{corpus}-{args.model.replace(':', '_')}{arguments}")
    connect_ray(None, local_options={"include_dashboard": False}, log_to_driver=False)
    if not os.path.exists(os.path.join(output, "summary.json")):
        started = time.perf_counter()
        try:
            summary = pipeline.run_corpus(
                manifest,
                output,
                model=args.model,
                model_kwargs=model_kwargs,
                batch_size=4,
                resume=os.path.exists(output),
            )
        except UsageError as error:  # a misspelt --model-arg: one line, as the CLI gives
            parser.error(str(error))
        print(
            f"diarized {summary['ok']} recordings ({summary['audio_hours'] * 60:.1f} min) "
            f"in {time.perf_counter() - started:.0f} s",
            flush=True,
        )
    print(
        f"{args.split}: {spec.num} conversations from speakers {', '.join(recurring_pool(args.split, spec))}",
        flush=True,
    )
    min_speech = DEFAULT_MIN_SPEECH_SECONDS if args.min_speech_seconds is None else args.min_speech_seconds
    header = (
        f"{'threshold':>9} {'per-rec DER':>11} {'global DER':>10} {'increase':>8} "
        f"{'purity':>7} {'coverage':>8} {'global/ref spk':>14} {'link s':>6}"
    )
    print(header)
    for threshold in args.thresholds or [None]:
        linked = link_run(output, threshold=threshold, min_speech_seconds=min_speech, fresh=True)
        _, overall = evaluate_global_run(output, collar=args.collar)
        print(
            f"{linked['threshold']:9.3f} {overall['per_recording_der']:11.2%} {overall['global_der']:10.2%} "
            f"{overall['der_increase'] * 100:+8.2f} "
            f"{overall['link_purity']:7.3f} {overall['link_coverage']:8.3f} "
            f"{overall['global_speakers']:>7}/{overall['reference_speakers']:<6} "
            f"{linked['wall_seconds']:6.1f}"
            + ("" if isinstance(threshold, float) else f"  ({linked['threshold_source']})"),
            flush=True,
        )
        if args.json:
            record = {
                "split": args.split,
                "model": args.model,
                "threshold": linked["threshold"],
                "threshold_source": linked["threshold_source"],
                "min_speech_seconds": min_speech,
                **{
                    k: overall[k]
                    for k in (
                        "recordings",
                        "per_recording_der",
                        "global_der",
                        "der_increase",
                        "global_confusion",
                        "link_purity",
                        "link_coverage",
                        "link_purity_items",
                        "link_coverage_items",
                        "global_speakers",
                        "reference_speakers",
                    )
                },
                "linking_seconds": linked["wall_seconds"],
            }
            with open(args.json, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
