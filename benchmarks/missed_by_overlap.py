"""Where a split's missed speech is, by how many reference speakers talk at once: speech nobody was
heard in, or a second (third) talker the output did not add. Frame counts at 10 ms inside the UEM,
no collar, known counts; a diagnosis, so its numbers are not the scored DER's.

python -m benchmarks.missed_by_overlap --split dev      # also --split test, --corpus far_field
"""

from __future__ import annotations

import argparse

import numpy as np

from benchmarks.data import add_data_argument
from benchmarks.splits import add_split_arguments, split_manifests
from pipeline.io.manifest import read_manifest
from pipeline.io.rttm import parse_segment, read_rttm, read_uem
from pipeline.models.registry import load_model

STEP = 0.01


def talkers(turns, frames: int) -> np.ndarray:
    """(frames,) how many of `turns` (with `start`, `end` in seconds) cover each 10 ms frame."""
    count = np.zeros(frames, np.int64)
    for turn in turns:
        count[int(turn.start / STEP) : int(turn.end / STEP)] += 1
    return count


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_split_arguments(parser)
    add_data_argument(parser)
    args = parser.parse_args(argv)
    model = load_model(args.model, device="cpu")
    manifest = split_manifests(args.split, args.dest, corpora=(args.corpus,))[args.corpus]
    rows = read_manifest(manifest)
    hypotheses = model.diarize(manifest, num_workers=0)
    speech, missed, silent = np.zeros(5), np.zeros(5), np.zeros(5)  # per reference talker count, 4+ together
    for row, segments in zip(rows, hypotheses):
        reference = [turn for turns in read_rttm(row.rttm_filepath).values() for turn in turns]
        hypothesis = [parse_segment(segment) for segment in segments]
        frames = int(max([turn.end for turn in reference + hypothesis] + [1.0]) / STEP) + 1
        scored = np.zeros(frames, bool)
        regions = [r for rs in read_uem(row.uem_filepath).values() for r in rs] if row.uem_filepath else [(0, None)]
        for start, end in regions:
            scored[int(start / STEP) : None if end is None else int(end / STEP)] = True
        said, heard = talkers(reference, frames), talkers(hypothesis, frames)
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
