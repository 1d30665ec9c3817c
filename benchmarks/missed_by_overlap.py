"""Where a split's missed speech is, by how many reference speakers talk at once: speech nobody was
heard in, or a second (third) talker the output did not add. Frame counts at 10 ms inside the UEM,
no collar, known counts; a diagnosis, so its numbers are not the scored DER's.

python -m benchmarks.missed_by_overlap --split dev      # also --split test, --corpus far_field
"""

from __future__ import annotations

import argparse

import numpy as np

from benchmarks.data import add_data_argument
from benchmarks.splits import CORPORA, split_manifests
from pipeline.io.manifest import read_manifest
from pipeline.io.rttm import parse_segment
from pipeline.models.registry import load_model

STEP = 0.01


def talkers(turns, frames: int) -> np.ndarray:
    """(frames,) how many of `turns` ((start, end) seconds) cover each 10 ms frame."""
    count = np.zeros(frames, np.int64)
    for start, end in turns:
        count[int(start / STEP) : int(end / STEP)] += 1
    return count


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=("dev", "test"), default="dev")
    parser.add_argument("--corpus", choices=CORPORA, default="ami")
    parser.add_argument("--model", default="default")
    parser.add_argument("--dest", default="outputs/benchmarks/splits")
    add_data_argument(parser)
    args = parser.parse_args(argv)
    model = load_model(args.model, device="cpu")
    manifest = split_manifests(args.split, args.dest, corpora=(args.corpus,))[args.corpus]
    rows = read_manifest(manifest)
    hypotheses = model.diarize(manifest, num_workers=0)
    speech, missed, silent = np.zeros(5), np.zeros(5), np.zeros(5)  # per reference talker count, 4+ together
    for row, segments in zip(rows, hypotheses):
        reference = [line.split() for line in open(row.rttm_filepath, encoding="utf-8") if line.strip()]
        turns = [(float(f[3]), float(f[3]) + float(f[4])) for f in reference]
        hypothesis = [(parse_segment(s).start, parse_segment(s).end) for s in segments]
        frames = int(max([end for _, end in turns + hypothesis] + [1.0]) / STEP) + 1
        scored = np.zeros(frames, bool)
        for line in open(row.uem_filepath, encoding="utf-8") if row.uem_filepath else ():
            start, end = map(float, line.split()[2:4])
            scored[int(start / STEP) : int(end / STEP)] = True
        if not row.uem_filepath:
            scored[:] = True
        said, heard = talkers(turns, frames), talkers(hypothesis, frames)
        for k in range(1, 5):
            at = scored & (said >= k if k == 4 else said == k)
            speech[k] += said[at].sum() * STEP
            missed[k] += np.clip(said - heard, 0, None)[at].sum() * STEP
            silent[k] += said[at & (heard == 0)].sum() * STEP
    total = speech.sum()
    print(f"{args.split} {args.corpus}, known counts: {total:.1f} speaker-seconds of reference speech")
    for k in range(1, 5):
        if speech[k]:
            print(
                f"  {k}{'+' if k == 4 else ''} talking: {speech[k]:6.1f} speaker-s, missed {missed[k]:5.1f} "
                f"({missed[k] / total:5.1%} of all speech), of which nobody heard {silent[k]:5.1f}"
            )


if __name__ == "__main__":
    main()
