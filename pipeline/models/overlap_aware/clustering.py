"""Clustering of (chunk, local speaker) embeddings into a recording's speakers, pyannote 3.1 style.

1. `cluster_centroids`: agglomerative clustering (average linkage on L2-normalised embeddings,
   i.e. cosine geometry; pyannote 3.1 uses centroid linkage, see `linkage_method`) of the
   embeddings of local speakers that speak alone long enough to be trusted; clusters smaller than
   `min_cluster_size` are folded into the nearest large one. The count is the known count (the
   cut that gives that many large clusters, by merge order), else estimated within
   [min_speakers, max_speakers]: by default one speaker when an average-linkage tree's last merge
   is close, else the cut with the best mean silhouette unless no cut separates the embeddings
   well, when the distance threshold decides (`count_method`; the dev split chose it over NME-SC's
   eigengap and a distance cut: docs/journal/).
   Above `max_direct` embeddings, the tree is built on a seeded random sample of `max_direct` of
   them and every embedding then joins its nearest centroid, so time and memory stay bounded
   whatever the recording's length.
2. `assign_local_speakers`: every embedded local speaker of every chunk goes to its most similar
   centroid, with the constraint that two local speakers of one chunk never share a cluster
   (a Hungarian assignment per chunk, as pyannote does).
"""

from __future__ import annotations

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.optimize import linear_sum_assignment

from pipeline.models.overlap_aware.config import ChunkClusteringConfig


def normalize(embeddings: np.ndarray) -> np.ndarray:
    return embeddings / np.linalg.norm(embeddings, axis=-1, keepdims=True).clip(1e-8)


def cluster_centroids(
    embeddings: np.ndarray,
    config: ChunkClusteringConfig,
    num_speakers: int | None = None,
    min_speakers: int = 1,
    max_speakers: int = 8,
    counted: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(centroids (K, D) unit vectors, labels (N,)) of `embeddings` (N, D). `counted` (N,) bool:
    the embeddings whose silhouette decides an unknown count, when there are enough of them
    (default: all)."""
    vectors = normalize(np.asarray(embeddings, dtype=np.float64))
    n = len(vectors)
    if n == 0:
        return np.zeros((0, vectors.shape[1] if vectors.ndim == 2 else 0), dtype=np.float32), np.zeros(0, dtype=int)
    if n == 1:
        return vectors.astype(np.float32), np.zeros(1, dtype=int)
    sample = _sample(n, config.max_direct, config.seed)
    points = vectors[sample]
    dendrogram = linkage(points, method=config.linkage_method, metric="euclidean")
    min_size = _min_cluster_size(config, len(points))
    if num_speakers:
        point_labels = _cut_to_count(dendrogram, min(num_speakers, len(points)), min_size)
    else:
        point_labels = fcluster(dendrogram, config.threshold, criterion="distance") - 1
        count = int((np.bincount(point_labels) >= min_size).sum())
        if config.count_method == "silhouette" and n >= config.min_estimate_embeddings:
            chosen = _voters(len(vectors), counted, config)
            estimate, separation = silhouette_count(
                vectors[chosen], min_speakers, max_speakers, config.one_speaker_distance
            )
            if estimate == 1 or separation >= config.min_silhouette:
                count = estimate
                point_labels = _cut_to_count(dendrogram, count, min_size)
        bounded = int(np.clip(count, min_speakers, min(max_speakers, len(points))))
        if bounded != count:
            point_labels = _cut_to_count(dendrogram, bounded, min_size)
    sizes = np.bincount(point_labels)
    if num_speakers:  # exactly the known count: the heaviest clusters stay
        large = np.sort(np.argsort(-sizes, kind="stable")[: min(num_speakers, len(sizes))])
    else:
        large = np.flatnonzero(sizes >= min_size)
    point_labels = _fold_into(points, point_labels, large)
    _, point_labels = np.unique(point_labels, return_inverse=True)
    centroids = normalize(np.stack([points[point_labels == k].mean(0) for k in range(point_labels.max() + 1)]))
    if len(sample) == n:
        labels = point_labels
    else:  # the embeddings left out of the sample join their nearest centroid
        labels = np.argmax(vectors @ centroids.T, axis=1)
        labels[sample] = point_labels
        centroids = normalize(np.stack([vectors[labels == k].mean(0) for k in range(len(centroids))]))
    return centroids.astype(np.float32), labels


def silhouette_count(
    points: np.ndarray, min_speakers: int, max_speakers: int, one_speaker_distance: float
) -> tuple[int, float]:
    """(count, its mean silhouette): one speaker when the average-linkage (cosine) tree's last
    merge is below `one_speaker_distance` (a silhouette always prefers some split, so it cannot say
    "one"; the score is then inf); else the count of two or more whose cut of that tree has the
    highest mean silhouette."""
    from sklearn.metrics import silhouette_score

    tree = linkage(points, method="average", metric="cosine")
    if min_speakers <= 1 and tree[-1, 2] < one_speaker_distance:
        return 1, np.inf
    best, best_count = -np.inf, max(1, min_speakers)
    for count in range(max(2, min_speakers), min(max_speakers, len(points) - 1) + 1):
        labels = fcluster(tree, count, criterion="maxclust")
        if len(np.unique(labels)) < 2:
            continue
        score = silhouette_score(points, labels, metric="cosine")
        if score > best:
            best, best_count = score, count
    return best_count, float(best)


def _voters(n: int, counted: np.ndarray | None, config: ChunkClusteringConfig) -> np.ndarray:
    """Indices of the `n` embeddings whose silhouette decides the count: the `counted` ones when
    there are enough, and at most `max_direct` of them, drawn at random (k-means centroids would
    hide how the voices spread: a 3 h, 4-speaker meeting was counted as 2 from 2,000
    micro-clusters, as 3 from a sample of 2,000 of its embeddings)."""
    chosen = np.arange(n)
    if counted is not None and counted.sum() >= config.min_voters:
        chosen = np.flatnonzero(counted)
    return chosen[_sample(len(chosen), config.max_direct, config.seed)]


def _sample(n: int, size: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded random sample of `size` of `n` items (all of them when n <= size)."""
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def _min_cluster_size(config: ChunkClusteringConfig, n: int) -> int:
    # pyannote: min(min_cluster_size, max(1, round(0.1 * num_embeddings)))
    return int(min(config.min_cluster_size, max(config.smallest_cluster, round(0.1 * n))))


def _cut_to_count(dendrogram: np.ndarray, count: int, min_size: int) -> np.ndarray:
    """Labels with `count` large clusters (or as close as the tree allows). Centroid linkage (pyannote's)
    is not monotonic, so a cut by distance can skip counts: the cut goes by merge order instead
    (pyannote's trick), from `count` raw clusters upwards until `count` of them are large."""
    ordered = dendrogram.copy()
    ordered[:, 2] = np.arange(len(ordered))
    best, best_gap = None, np.inf
    for raw in range(count, min(len(ordered) + 1, count + 200) + 1):
        labels = fcluster(ordered, raw, criterion="maxclust") - 1
        large = int((np.bincount(labels) >= min_size).sum())
        if abs(large - count) < best_gap:
            best, best_gap = labels, abs(large - count)
        if large >= count:
            break
    return best


def _fold_into(points: np.ndarray, labels: np.ndarray, large: np.ndarray) -> np.ndarray:
    """Members of the clusters not in `large` join the most similar cluster of `large` (none
    large: one speaker)."""
    if len(large) == 0:
        return np.zeros_like(labels)
    small = ~np.isin(labels, large)
    if not small.any():
        return labels
    centroids = normalize(np.stack([points[labels == k].mean(0) for k in large]))
    labels = labels.copy()
    labels[small] = large[np.argmax(points[small] @ centroids.T, axis=1)]
    return labels


def assign_local_speakers(embeddings: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """(chunks, local speakers) cluster index, -1 for local speakers without an embedding (NaN) or
    left over when a chunk has more local speakers than there are clusters."""
    chunks, local, _ = embeddings.shape
    assignment = np.full((chunks, local), -1, dtype=np.int64)
    if len(centroids) == 0 or chunks == 0:
        return assignment
    valid = ~np.isnan(embeddings).any(-1)
    similarity = np.einsum("csd,kd->csk", normalize(np.nan_to_num(embeddings)), centroids)
    if len(centroids) == 1:  # nothing to constrain: the best local speaker of a chunk takes it
        best = np.where(valid, similarity[..., 0], -np.inf).argmax(1)
        has = valid.any(1)
        assignment[np.flatnonzero(has), best[has]] = 0
        return assignment
    for c in np.flatnonzero(valid.any(1)):
        rows = np.flatnonzero(valid[c])
        speakers, clusters = linear_sum_assignment(similarity[c, rows], maximize=True)
        assignment[c, rows[speakers]] = clusters
    return assignment
