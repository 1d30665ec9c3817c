"""Tuning on the dev split only: forward once, then sweep the CPU-side parameters.

`_diarize_forward` is the expensive part and does not depend on clustering or post-processing
parameters, so its outputs are computed once per (split, forward options) and every combination of
clustering threshold and post-processing parameters is scored from them. The grid's winner is
what `OverlapAwareConfig` defaults to; the test split is then scored once with it
(`python -m benchmarks.benchmark accuracy --split test`).

    python -m benchmarks.tuning --split dev                       # AMI, simulated and short calls of dev
    python -m benchmarks.tuning --split dev --option step_seconds=5   # a forward option
    python -m benchmarks.tuning --split dev --grid min_estimate_embeddings=10,30 --grid min_silhouette=0,0.25
    python -m benchmarks.tuning --split dev --more ...            # with 60 + 60 more dev conversations
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import pickle
import time
from dataclasses import replace
from typing import Any, Iterable

import torch

from benchmarks.data import add_data_argument
from pipeline.config import DiarizeConfig, InternalDiarizeConfig
from pipeline.errors import BadParameterError
from pipeline.io.dataset import DiarizationDataset
from pipeline.io.manifest import read_manifest
from pipeline.io.rttm import parse_segment
from pipeline.models.contract import RecordingBatch
from pipeline.models.registry import load_model
from pipeline.scoring.metrics import score_rows

GRID = {
    # silhouette: one speaker by the tree's last merge, else the best-separated cut; eigengap: NME-SC
    # on recordings with enough embeddings, else the threshold; threshold: the AHC cut
    "count_method": ("silhouette", "eigengap", "threshold"),
    "linkage_method": ("average", "centroid"),
    "threshold": (0.75, 0.85, 0.9, 0.95),
    "min_duration_off": (0.0, 0.2),
}


def with_point(model, point: dict[str, Any]):
    """`model.config` and post-processing parameters with a grid point's values: each key goes
    where it is a field (the clustering config, the post-processing parameters, the model config)."""
    from dataclasses import fields

    def names(obj):
        return {f.name for f in fields(obj)}

    base = model.default_postprocessing
    clustering = {k: v for k, v in point.items() if k in names(model.config.clustering)}
    postprocessing = {k: v for k, v in point.items() if k in names(base) and k not in clustering}
    top = {k: v for k, v in point.items() if k not in clustering and k not in postprocessing}
    unknown = set(top) - names(model.config)
    if unknown:
        raise ValueError(f"unknown grid parameter(s) {sorted(unknown)}")
    config = replace(model.config, clustering=replace(model.config.clustering, **clustering), **top)
    return config, replace(base, **postprocessing)


def forward_outputs(model, manifest: str) -> tuple[list, list[dict[str, Any]], float]:
    """(rows, one forward item per row, seconds spent in the forward hook)."""
    rows = read_manifest(manifest)
    loader = torch.utils.data.DataLoader(DiarizationDataset(rows), batch_size=1, collate_fn=RecordingBatch.collate)
    outputs, seconds = [], 0.0
    with torch.inference_mode():
        for batch in loader:
            began = time.perf_counter()
            outputs.extend(model._diarize_forward(batch))
            seconds += time.perf_counter() - began
    return rows, outputs, seconds


def cached_forward_outputs(
    model, manifest: str, dest: str, corpus: str, model_name: str, options: dict[str, Any]
) -> tuple[list, list, float]:
    """`forward_outputs`, kept under `dest/forward-cache/` per (corpus, model, forward options). The
    forward pass depends only on the audio, the forward options and the model code: delete the cache
    folder after changing `_diarize_forward`."""
    cache = os.path.join(dest, "forward-cache", f"{corpus}-{model_name}-{json.dumps(options, sort_keys=True)}.pkl")
    if os.path.exists(cache):
        with open(cache, "rb") as f:
            return pickle.load(f)
    rows, outputs, seconds = forward_outputs(model, manifest)
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    with open(cache, "wb") as f:
        pickle.dump((rows, outputs, seconds), f)
    return rows, outputs, seconds


def score_outputs(model, rows, outputs, estimate: bool, postprocessing=None) -> dict:
    """Corpus scores of `outputs` through the model's output processing, with `postprocessing` (default:
    the model's own, `default_postprocessing`)."""
    params = postprocessing or model.default_postprocessing
    config = DiarizeConfig(postprocessing_params=params, _internal=InternalDiarizeConfig())
    items = [replace(o, num_speakers=0) if estimate else o for o in outputs]
    segments = model._diarize_output_processing(items, [o.uniq_id for o in outputs], config)
    hypotheses = {row.uniq_id: [parse_segment(s) for s in segs] for row, segs in zip(rows, segments)}
    return score_rows(rows, hypotheses, collar=0.25)[1]


def sweep(model, corpora: dict[str, tuple[list, list]], grid: dict[str, Iterable] = GRID) -> list[dict]:
    """DER and count accuracy of every grid point on every corpus, known and estimated counts."""
    original = model.config
    results = []
    try:
        for values in itertools.product(*grid.values()):
            point = dict(zip(grid, values))
            model.config, postprocessing = with_point(model, point)
            for corpus, (rows, outputs) in corpora.items():
                for estimate in (False, True):
                    overall = score_outputs(model, rows, outputs, estimate, postprocessing)
                    key = f"{corpus}_{'estimated' if estimate else 'known'}"
                    point[key] = overall["der"]
                    point[key + "_count_right"] = overall["speaker_count_accuracy"]
                    if not estimate:  # whether anyone speaks does not hang on the count: shown once
                        point[f"{corpus}_missed"] = overall["missed_speech"]
                        point[f"{corpus}_false_alarm"] = overall["false_alarm"]
            results.append(point)
    finally:
        model.config = original
    return results


def _value(text: str) -> Any:
    """A command-line value: JSON when it parses (numbers, true, null), else the string itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv=None) -> None:
    from benchmarks.splits import split_manifests

    parser = argparse.ArgumentParser(prog="python -m benchmarks.tuning", description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", default="dev", choices=["dev"], help="tuning reads the dev split only")
    parser.add_argument("--model", default="default")
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="forward option of the model (e.g. step_seconds=5), VALUE read as JSON, else as a string",
    )
    parser.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="sweep these values of a clustering, post-processing or model parameter instead of the "
        "default grid (values read as JSON, else as strings), e.g. --grid min_silhouette=0,0.25",
    )
    parser.add_argument(
        "--more",
        action="store_true",
        help="also score the dev split's 60 more simulated conversations "
        "and 60 more short calls (benchmarks.splits.MORE_DEV_SPLITS)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dest", default="outputs/benchmarks/splits")
    parser.add_argument("--json", default=None, help="write the grid's results here")
    add_data_argument(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for given in args.option + args.grid:
        if not given.partition("=")[0] or not given.partition("=")[2]:
            parser.error(f"{given!r} is not KEY=VALUE: e.g. --option step_seconds=5 or --grid threshold=0.7,0.8")
    options = {key: _value(value) for key, _, value in (option.partition("=") for option in args.option)}
    grid = {
        key: [_value(v) for v in values.split(",")] for key, _, values in (g.partition("=") for g in args.grid)
    } or GRID
    try:
        model = load_model(args.model, device="cpu", **options)
    except (TypeError, BadParameterError) as error:
        parser.error(f"{error}: --option takes fields of the model's config (e.g. step_seconds=5)")
    try:
        with_point(model, dict.fromkeys(grid))
    except (ValueError, TypeError, AttributeError) as error:
        parser.error(
            f"{error}: --grid takes fields of {type(model.config).__name__}, its clustering config "
            "or its post-processing parameters"
        )
    corpora, forward_seconds = {}, {}
    for corpus, manifest in split_manifests(args.split, args.dest, args.more).items():
        rows, outputs, seconds = cached_forward_outputs(model, manifest, args.dest, corpus, args.model, options)
        corpora[corpus], forward_seconds[corpus] = (rows, outputs), seconds
    results = sweep(model, corpora, grid)
    print(json.dumps({"forward_seconds": forward_seconds, **options}))
    print(" | ".join(results[0]))
    for point in results:
        print(" | ".join(f"{value:.3f}" if isinstance(value, float) else str(value) for value in point.values()))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"forward_seconds": forward_seconds, "options": options, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
