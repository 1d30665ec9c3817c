"""One embedding centroid per (recording, speaker): what a model gives for corpus-wide speaker linking.

A model's `_diarize_results` returns them in each `RecordingResult.speaker_embeddings`
(`pipeline.models.contract.Centroids`), one entry per speaker of the segments, under the same names;
it builds them with `speaker_centroids(embeddings, labels, names)` from its embeddings, their cluster
labels and the name each cluster got in the segments (`pipeline.postprocessing.speaker_names`). A
model without embeddings gives none, and a corpus run then writes an empty `speakers/` table
(`summary.json` says so). `diarize(..., return_embeddings=True)` returns them too."""

from __future__ import annotations

import pickle
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:  # a type only: the output tables read centroids without torch
    from pipeline.models.contract import Centroids


def speaker_centroids(
    embeddings: np.ndarray, labels: np.ndarray, names: Mapping[int, str] | Sequence[str | None]
) -> Centroids:
    """`{name: (centroid, num_embeddings)}`: for each cluster label that has a name, the mean of the
    L2-normalised embeddings labelled with it, normalised again (float32, unit norm). Labels without
    a name (a cluster that produced no turn) and names without embeddings are left out."""
    embeddings = np.asarray(embeddings, dtype=np.float32)
    labels = np.asarray(labels).reshape(-1)
    if embeddings.ndim != 2 or len(embeddings) != len(labels):
        raise ValueError(
            f"embeddings {embeddings.shape} and labels {labels.shape} do not match (one label per embedding row)"
        )
    if not isinstance(names, Mapping):
        names = {label: name for label, name in enumerate(names) if name is not None}
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    usable = np.isfinite(norms[:, 0]) & (norms[:, 0] > 1e-12)
    normed = np.where(usable[:, None], embeddings / np.where(usable[:, None], norms, 1.0), 0.0)
    centroids: Centroids = {}
    for label, name in names.items():
        members = (labels == label) & usable
        count = int(members.sum())
        if not count:
            continue
        mean = normed[members].mean(0, dtype=np.float64)
        norm = float(np.linalg.norm(mean))
        if norm > 1e-12:
            centroids[str(name)] = ((mean / norm).astype(np.float32), count)
    return centroids


def pack_centroids(centroids: Centroids) -> bytes:
    """One recording's centroids as bytes, to travel in a Ray block to the sink."""
    return pickle.dumps(
        {name: (np.asarray(vector, dtype=np.float32), int(count)) for name, (vector, count) in centroids.items()},
        protocol=pickle.HIGHEST_PROTOCOL,
    )


def unpack_centroids(data: bytes | None) -> Centroids:
    return pickle.loads(data) if data else {}
