"""Per-recording DER of a split's corpus, known and estimated counts: where a corpus's error sits.

python benchmarks/per_file_der.py --split dev --corpus ami        # also --split test, --corpus far_field
"""

from __future__ import annotations

import argparse

from benchmarks.benchmark import diarize_and_score
from benchmarks.splits import add_split_arguments, split_manifests
from pipeline.models.registry import load_model


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_split_arguments(parser)
    args = parser.parse_args(argv)
    model = load_model(args.model, device="cpu")
    manifest = split_manifests(args.split, args.dest, corpora=(args.corpus,))[args.corpus]
    for estimate in (False, True):
        rows, total = diarize_and_score(manifest, model, estimate_speakers=estimate)
        count = "estimated" if estimate else "known"
        print(f"{args.split} {args.corpus} {count}: DER {100 * total['der']:.1f} %")
        for row in rows:
            print(
                f"  {row['uri']:14s} DER {100 * row['der']:5.1f}  missed {100 * row['missed_speech']:5.1f}  "
                f"false alarm {100 * row['false_alarm']:4.1f}  confusion {100 * row['confusion']:5.1f}  "
                f"speakers {row['hypothesis_speakers']} / {row['reference_speakers']}"
            )


if __name__ == "__main__":
    main()
