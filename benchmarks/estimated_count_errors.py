"""Dev split only: where the default model's estimated count goes wrong. Per corpus, the cosine of the
two closest speaker centroids of each recording, for the recordings counted right, too high and too
low; with `--recordings`, each wrongly counted recording's speakers against the reference speakers
(seconds of speech, seconds outside any reference speech, seconds shared with each reference speaker).

    python -m benchmarks.estimated_count_errors                           # far-field, 60 more simulated and short calls
    python -m benchmarks.estimated_count_errors --corpora far_field --recordings

Forward items come from (and go to) `benchmarks.tuning`'s forward cache.
docs/journal/2026-12-07-count-aggregation.md has what it said."""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
import torch

from benchmarks.data import add_data_argument
from benchmarks.splits import split_manifests
from benchmarks.tuning import cached_forward_outputs
from pipeline.config import DiarizeConfig, InternalDiarizeConfig
from pipeline.io.rttm import parse_segment, read_rttm
from pipeline.models.registry import load_model

STEP = 0.01  # seconds per frame of the overlap arithmetic


def closest_pair_cosine(centroids: dict) -> float | None:
    vectors = np.stack([centroid for centroid, _ in centroids.values()]) if len(centroids) > 1 else None
    if vectors is None:
        return None
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -1.0)
    return float(similarity.max())


def activity(turns, names: list[str], frames: int) -> np.ndarray:
    """(speakers, frames) bool at `STEP` from turns with `.start`, `.end`, `.speaker`."""
    active = np.zeros((len(names), frames), bool)
    for turn in turns:
        active[names.index(turn.speaker), int(turn.start / STEP) : int(turn.end / STEP)] = True
    return active


def describe_speakers(row, output, segments: list[str]) -> list[str]:
    reference = read_rttm(row.rttm_filepath)[output.uniq_id]
    hypothesis = [parse_segment(s) for s in segments]
    frames = int(max([output.num_samples / 16000] + [t.end for t in reference + hypothesis]) / STEP) + 1
    ref_names = sorted({t.speaker for t in reference})
    ref = activity(reference, ref_names, frames)
    names = sorted({t.speaker for t in hypothesis})
    lines = [f"  reference speech (s): {[round(float(r.sum() * STEP), 1) for r in ref]}"]
    for name, hyp in zip(names, activity(hypothesis, names, frames)):
        shared = [round(float((hyp & r).sum() * STEP), 1) for r in ref]
        outside = (hyp & ~ref.any(0)).sum() * STEP
        lines.append(f"  {name}: {hyp.sum() * STEP:.1f} s, {outside:.1f} s outside reference speech, shared {shared}")
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.estimated_count_errors", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--dest", default="outputs/benchmarks/splits")
    parser.add_argument("--corpora", default="far_field,simulated_more,short_more")
    parser.add_argument("--recordings", action="store_true", help="each wrongly counted recording's speakers")
    add_data_argument(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    model = load_model("default", device="cpu")
    config = DiarizeConfig(postprocessing_params=model.default_postprocessing, _internal=InternalDiarizeConfig())
    manifests = split_manifests("dev", args.dest, more=True)
    for corpus in args.corpora.split(","):
        rows, outputs, _ = cached_forward_outputs(model, manifests[corpus], args.dest, corpus, "default", {})
        items = [replace(o, num_speakers=0) for o in outputs]
        results = model._diarize_results(items, [o.uniq_id for o in outputs], config)
        cosines = {"right": [], "too high": [], "too low": []}
        for row, output, result in zip(rows, outputs, results):
            found = len(result.speaker_embeddings)
            kind = "right" if found == output.num_speakers else "too high" if found > output.num_speakers else "too low"
            cosine = closest_pair_cosine(result.speaker_embeddings)
            if cosine is not None:
                cosines[kind].append(round(cosine, 3))
            if args.recordings and kind != "right":
                print(f"{corpus} {output.uniq_id}: {output.num_speakers} speakers, {found} found")
                print("\n".join(describe_speakers(row, output, result.segments)))
        print(f"{corpus}, closest pair's cosine: " + "; ".join(f"{k} {sorted(v)}" for k, v in cosines.items()))


if __name__ == "__main__":
    main()
