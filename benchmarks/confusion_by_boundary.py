"""Where a model's confusion lies: seconds of scored confusion by distance to the nearest change in
the reference (any turn's start or end), on one corpus of the dev split.

    python benchmarks/confusion_by_boundary.py --corpus simulated_more [--estimate-speakers] [--model-arg KEY=VALUE ...]

The corpus is one of `benchmarks.splits.split_manifests("dev", more=True)` (ami, simulated, short,
simulated_more, short_more). Each recording is scored as `benchmarks.benchmark accuracy` scores it
(pyannote's optimal mapping; frames within the ±0.25 s collar are not scored), then every 10 ms
frame outside the collar is put in a band by its distance to the nearest reference boundary. Short
turns put all their frames near a boundary, so the bands say where errors are relative to changes,
not whether they are boundary errors: `--show N` prints the N longest confused stretches with the
turns around them, to tell a late change from a whole turn given to the wrong voice.
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

BANDS = (0.5, 1.0, 2.0, 4.0, np.inf)  # upper edges of the distance bands, the first from the collar
STEP = 0.01  # seconds per frame


def frame_grids(reference, hypothesis, labels: list[str], frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(frames, speakers) bool activity of the two annotations on a 10 ms grid."""
    grids = []
    for annotation in (reference, hypothesis):
        grid = np.zeros((frames, len(labels)), bool)
        for segment, _, label in annotation.itertracks(yield_label=True):
            grid[int(segment.start / STEP) : int(segment.end / STEP), labels.index(label)] = True
        grids.append(grid)
    return grids[0], grids[1]


def confusion_by_distance(reference, hypothesis, collar: float = 0.25):
    """(seconds of confusion per band of `BANDS`, of them in overlapped reference speech, the
    confused stretches (start, end), the hypothesis renamed) after pyannote's optimal mapping of
    `hypothesis` to `reference`."""
    from pyannote.metrics.diarization import DiarizationErrorRate

    hypothesis = hypothesis.rename_labels(
        mapping=DiarizationErrorRate(collar=2 * collar).optimal_mapping(reference, hypothesis)
    )
    extents = [a.get_timeline().extent().end for a in (reference, hypothesis) if len(a)]
    frames = int(max(extents, default=0.0) / STEP) + 1
    labels = sorted(set(reference.labels()) | set(hypothesis.labels()))
    ref, hyp = frame_grids(reference, hypothesis, labels, frames)
    bounds = np.array(sorted(t for s in reference.itersegments() for t in (s.start, s.end)))
    times = np.arange(frames) * STEP
    distance = np.abs(times[:, None] - bounds[None]).min(1) if len(bounds) else np.full(frames, np.inf)
    scored = distance > collar
    confused = (np.minimum(ref.sum(1), hyp.sum(1)) - (ref & hyp).sum(1)) * scored
    bands = np.histogram(distance[scored], bins=(collar, *BANDS), weights=confused[scored])[0] * STEP
    overlapped = float((confused * (ref.sum(1) > 1)).sum() * STEP)
    edges = np.flatnonzero(np.diff(np.r_[0, confused > 0, 0]))
    stretches = [(a * STEP, b * STEP) for a, b in zip(edges[::2], edges[1::2])]
    return bands, overlapped, stretches, hypothesis


def main(argv=None) -> None:
    from pyannote.core import Annotation, Segment

    from benchmarks.splits import split_manifests
    from benchmarks.tuning import forward_outputs
    from pipeline.config import DiarizeConfig, InternalDiarizeConfig
    from pipeline.corpus.options import model_argument
    from pipeline.io.rttm import parse_segment
    from pipeline.models import load_model
    from pipeline.scoring.metrics import load_reference, to_annotation

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default="simulated_more")
    parser.add_argument("--model", default="default")
    parser.add_argument("--model-arg", action="append", default=[], type=model_argument, metavar="KEY=VALUE")
    parser.add_argument("--estimate-speakers", action="store_true")
    parser.add_argument("--show", type=int, default=0, metavar="N")
    parser.add_argument("--dest", default="outputs/benchmarks/splits")
    args = parser.parse_args(argv)
    manifests = split_manifests("dev", args.dest, True)
    if args.corpus not in manifests:
        parser.error(f"--corpus {args.corpus!r}: use one of {sorted(manifests)}")
    model = load_model(args.model, device="cpu", **dict(args.model_arg))
    rows, outputs, _ = forward_outputs(model, manifests[args.corpus])
    items = [dataclasses.replace(o, num_speakers=0) if args.estimate_speakers else o for o in outputs]
    config = DiarizeConfig(postprocessing_params=model.default_postprocessing, _internal=InternalDiarizeConfig())
    segments = model._diarize_output_processing(items, [o.uniq_id for o in outputs], config)
    total, overlapped, worst = np.zeros(len(BANDS)), 0.0, []
    for row, lines in zip(rows, segments):
        reference = to_annotation(load_reference(row)[0], row.uniq_id)
        hypothesis = Annotation(uri=row.uniq_id)
        for line in lines:
            turn = parse_segment(line)
            hypothesis[Segment(turn.start, turn.start + turn.duration)] = turn.speaker
        bands, in_overlap, stretches, hypothesis = confusion_by_distance(reference, hypothesis)
        total += bands
        overlapped += in_overlap
        worst += [(b - a, row.uniq_id, a, b, reference, hypothesis) for a, b in stretches]
    names = [f"{lo:g}-{hi:g} s" for lo, hi in zip((0.25, *BANDS[:-1]), BANDS)]  # the collar is 0.25 s
    print(
        f"{args.corpus}, {'estimated' if args.estimate_speakers else 'known'} counts: "
        f"{total.sum():.1f} s of confusion outside the collar, "
        f"{overlapped:.1f} s of it in overlapped speech"
    )
    print("by distance to the nearest reference change: " + ", ".join(f"{n} {v:.1f} s" for n, v in zip(names, total)))
    for _length, uniq_id, start, end, reference, hypothesis in sorted(worst, key=lambda w: -w[0])[: args.show]:
        around = Segment(max(0.0, start - 1.0), end + 1.0)
        print(f"{uniq_id} {start:.2f}-{end:.2f} s:")
        for name, annotation in (("reference", reference), ("hypothesis", hypothesis)):
            turns = [
                f"{s.start:.2f}-{s.end:.2f} {label}"
                for s, _, label in annotation.crop(around).itertracks(yield_label=True)
            ]
            print(f"  {name}: " + ", ".join(turns))


if __name__ == "__main__":
    main()
