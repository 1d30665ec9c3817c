"""How well a linking threshold learnt from the corpus itself would land, on
recurring-speaker corpora of the dev split: for each corpus and model, the global-DER increase over
per-recording DER at a grid of thresholds (where the best ones lie), and the thresholds candidate
estimators give from the run's own within-recording speaker similarities, with their increase.

    python benchmarks/linking_threshold_estimate.py --model default --work /tmp/lte
    python benchmarks/linking_threshold_estimate.py --model ge2e --work /tmp/lte --seeds 3003 3005 3007

Each corpus (`RecurringSplit` with `--seeds` and `--pools`) is written and diarized once under
`--work`. Dev only: the test split's corpus is `benchmarks/speaker_linking_accuracy.py --split test`'s."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def estimators(similarities: np.ndarray) -> dict[str, float]:
    """Candidate thresholds from the within-recording similarities: high quantiles, and a robust
    centre plus k robust spreads (median and IQR / 1.349: the bulk of the pairs, not their top, which
    holds the voices a recording's diarization split in two)."""
    median = float(np.median(similarities))
    spread = float(np.subtract(*np.quantile(similarities, [0.75, 0.25])) / 1.349)
    found = {f"q{q:g}": float(np.quantile(similarities, q / 100)) for q in (90, 95)}
    found.update({f"median+{k:g}sd": median + k * spread for k in (1.0, 1.25, 1.5, 1.75, 2.0)})
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--work", default="/tmp/linking-threshold-estimate")
    parser.add_argument("--seeds", type=int, nargs="+", default=[3003, 3005, 3007])
    parser.add_argument("--pools", type=int, nargs="+", default=[12, 24, 12])
    parser.add_argument("--grid", type=float, nargs="+", default=None, help="default: around the model's own")
    args = parser.parse_args(argv)
    if len(args.seeds) != len(args.pools):
        parser.error(f"--seeds and --pools pair up: {len(args.seeds)} seeds, {len(args.pools)} pools")

    import pipeline
    from benchmarks.splits import RECURRING_SPLITS, recurring_manifest
    from pipeline.corpus.outputs import OutputLayout
    from pipeline.corpus.ray_session import connect_ray
    from pipeline.linking import DEFAULT_MIN_SPEECH_SECONDS
    from pipeline.linking.run import centroid_matrix, link_run, read_speakers
    from pipeline.linking.threshold import within_recording_similarities
    from pipeline.models.registry import linking_threshold
    from pipeline.scoring.evaluate import evaluate_global_run

    declared = linking_threshold(args.model)
    if args.grid is None and declared is None:
        parser.error(f"model {args.model!r} declares no linking_threshold to sweep around: pass --grid")
    grid = args.grid or [round(declared + d, 3) for d in np.arange(-0.1, 0.121, 0.02)]
    connect_ray(None, local_options={"include_dashboard": False}, log_to_driver=False)
    for seed, pool in zip(args.seeds, args.pools):
        spec = replace(RECURRING_SPLITS["dev"], seed=seed, pool_size=pool)
        manifest = recurring_manifest("dev", os.path.join(args.work, "corpora"), spec)
        output = os.path.join(args.work, "runs", f"dev-{seed}x{pool}-{args.model}")
        if not os.path.exists(os.path.join(output, "summary.json")):
            pipeline.run_corpus(manifest, output, model=args.model, batch_size=4, resume=os.path.exists(output))
        table, _, _ = read_speakers(OutputLayout(output))
        linked = table.column("speech_seconds").to_numpy() >= DEFAULT_MIN_SPEECH_SECONDS
        codes = table.column("uniq_id").combine_chunks().dictionary_encode().indices.to_numpy().astype(np.int64)
        similarities = within_recording_similarities(centroid_matrix(table), codes, np.flatnonzero(linked))

        def increase(threshold: float, output: str = output) -> float:
            link_run(output, threshold=threshold, fresh=True)
            _, overall = evaluate_global_run(output, collar=0.25)
            return overall["der_increase"] * 100

        print(f"\ndev corpus seed {seed}, pool {pool}, {args.model}: {len(similarities)} within-recording pairs")
        print("  grid:", "  ".join(f"{t:.3f} {increase(t):+.2f}" for t in grid), flush=True)
        for name, threshold in estimators(similarities).items():
            print(f"  {name:>13}: {threshold:.3f} {increase(threshold):+.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
