"""Tuning on the dev split only: forward once, then sweep the CPU-side parameters.

`_diarize_forward` is the expensive part and does not depend on clustering or post-processing
parameters, so its outputs are computed once per (split, forward options) and every combination of
clustering threshold and post-processing parameters is scored from them. The grid's winner is
what `OverlapAwareConfig` defaults to; the test split is then scored once with it
(`python -m pipeline.benchmark accuracy --split test`).

    python -m pipeline.tuning --split dev                       # AMI dev + simulated dev
    python -m pipeline.tuning --split dev --option step_seconds=5   # a forward option
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

from .config import DiarizeConfig, InternalDiarizeConfig
from .dataset import DiarizationDataset, collate_recordings
from .manifest import read_manifest
from .models import load_model
from .rttm import parse_segment
from .scoring import score_rows

GRID = {
    # silhouette: one speaker by the tree's last merge, else the best-separated cut; eigengap: NME-SC
    # on recordings with enough embeddings, else the threshold; threshold: the AHC cut
    "count_method": ("silhouette", "eigengap", "threshold"),
    "threshold": (0.6, 0.7, 0.75, 0.8),
    "min_duration_off": (0.0, 0.2),
}


def forward_outputs(model, manifest: str) -> tuple[list, list[dict[str, Any]], float]:
    """(rows, one forward item per row, seconds spent in the forward hook)."""
    rows = read_manifest(manifest)
    loader = torch.utils.data.DataLoader(DiarizationDataset(rows), batch_size=1, collate_fn=collate_recordings)
    outputs, seconds = [], 0.0
    with torch.inference_mode():
        for batch in loader:
            began = time.perf_counter()
            outputs.extend(model._diarize_forward(batch))
            seconds += time.perf_counter() - began
    return rows, outputs, seconds


def score_outputs(model, rows, outputs, estimate: bool, clustering: dict, postprocessing) -> dict:
    model.config = replace(model.config, clustering=replace(model.config.clustering, **clustering))
    config = DiarizeConfig(postprocessing_params=postprocessing, _internal=InternalDiarizeConfig())
    items = [dict(o, num_speakers=0) if estimate else o for o in outputs]
    segments = model._diarize_output_processing(items, [o["uniq_id"] for o in outputs], config)
    hypotheses = {row.uniq_id: [parse_segment(s) for s in segs] for row, segs in zip(rows, segments)}
    return score_rows(rows, hypotheses, collar=0.25)[1]


def sweep(model, corpora: dict[str, tuple[list, list]], grid: dict[str, Iterable] = GRID) -> list[dict]:
    """DER of every grid point on every corpus, known and estimated counts."""
    base = model.default_postprocessing
    results = []
    for method, threshold, min_off in itertools.product(grid["count_method"], grid["threshold"], grid["min_duration_off"]):
        params = replace(base, min_duration_off=min_off)
        point = {"count_method": method, "threshold": threshold, "min_duration_off": min_off}
        for corpus, (rows, outputs) in corpora.items():
            for estimate in (False, True):
                overall = score_outputs(model, rows, outputs, estimate, {"count_method": method, "threshold": threshold}, params)
                key = f"{corpus}_{'estimated' if estimate else 'known'}"
                point[key] = overall["der"]
                point[key + "_count_right"] = overall["speaker_count_accuracy"]
        results.append(point)
    return results


def main(argv=None) -> None:
    from .splits import ami_manifest, simulated_manifest

    parser = argparse.ArgumentParser(prog="python -m pipeline.tuning", description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", default="dev", choices=["dev"], help="tuning reads the dev split only")
    parser.add_argument("--model", default="default")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="forward option of the model (e.g. step_seconds=5), VALUE read as JSON")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dest", default="outputs/benchmarks/splits")
    parser.add_argument("--json", default=None, help="write the grid's results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    options = {key: json.loads(value) for key, _, value in (option.partition("=") for option in args.option)}
    model = load_model(args.model, device="cpu", **options)
    corpora, forward_seconds = {}, {}
    for corpus, manifest in {"ami": ami_manifest(args.split, args.dest), "simulated": simulated_manifest(args.split, args.dest)}.items():
        cache = os.path.join(args.dest, "forward-cache", f"{corpus}-{args.model}-{json.dumps(options, sort_keys=True)}.pkl")
        # The forward pass depends only on the audio, the forward options and the model code: delete
        # the cache folder after changing `_diarize_forward`.
        if os.path.exists(cache):
            with open(cache, "rb") as f:
                rows, outputs, seconds = pickle.load(f)
        else:
            rows, outputs, seconds = forward_outputs(model, manifest)
            os.makedirs(os.path.dirname(cache), exist_ok=True)
            with open(cache, "wb") as f:
                pickle.dump((rows, outputs, seconds), f)
        corpora[corpus], forward_seconds[corpus] = (rows, outputs), seconds
    results = sweep(model, corpora)
    print(json.dumps({"forward_seconds": forward_seconds, **options}))
    columns = [c for c in results[0] if not c.endswith("count_right")]
    print(" | ".join(columns))
    for point in results:
        print(" | ".join(f"{point[c]:.3f}" if isinstance(point[c], float) else str(point[c]) for c in columns))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"forward_seconds": forward_seconds, "options": options, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
