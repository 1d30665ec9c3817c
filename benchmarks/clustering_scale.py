"""The default model's clustering at the scale of a very long recording: the trusted embeddings of
a saved forward pass (`benchmarks/forward_memory.py --save`), tiled `--copies` times with a little
noise, clustered to a known count; prints time, cluster sizes and peak memory.

    python benchmarks/clustering_scale.py --forward outputs/exp/long10800.pkl --copies 3 --speakers 4
    # the k-means micro-cluster path it replaced (commit 0088a86):
    git worktree add /tmp/before 0088a86 && PYTHONPATH=/tmp/before python benchmarks/clustering_scale.py ...
"""

from __future__ import annotations

import argparse
import json
import pickle
import resource
import time

import numpy as np


def trusted_embeddings(model, output) -> np.ndarray:
    """The embeddings `speaker_activity` trains the clustering on, for one forward item."""
    import pipeline.models.overlap_aware.model as overlap_aware

    captured, cluster = {}, overlap_aware.cluster_centroids

    def capture(embeddings, *args, **kwargs):
        captured["embeddings"] = embeddings
        return cluster(embeddings, *args, **kwargs)

    overlap_aware.cluster_centroids = capture
    try:
        model.speaker_activity(output, (max(int(output.num_speakers), 1), 1, 8))
    finally:
        overlap_aware.cluster_centroids = cluster
    return captured["embeddings"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--forward", required=True, help="pickle of (rows, outputs, seconds); the first recording is used"
    )
    parser.add_argument("--copies", type=int, default=3)
    parser.add_argument("--speakers", type=int, required=True)
    parser.add_argument("--noise", type=float, default=0.02)
    args = parser.parse_args(argv)

    from pipeline.models import load_model
    from pipeline.models.overlap_aware.clustering import ChunkClusteringConfig, cluster_centroids

    with open(args.forward, "rb") as f:
        _, outputs, _ = pickle.load(f)
    embeddings = trusted_embeddings(load_model("default", device="cpu"), outputs[0])
    rng = np.random.default_rng(0)
    tiled = np.concatenate(
        [embeddings + args.noise * rng.standard_normal(embeddings.shape) for _ in range(args.copies)]
    )
    began = time.perf_counter()
    centroids, labels = cluster_centroids(tiled.astype(np.float32), ChunkClusteringConfig(), args.speakers)
    print(
        json.dumps(
            {
                "embeddings": len(tiled),
                "seconds": round(time.perf_counter() - began, 1),
                "cluster_sizes": np.bincount(labels).tolist(),
                "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
