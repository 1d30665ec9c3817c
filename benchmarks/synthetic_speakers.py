"""Synthetic speaker centroids for testing and benchmarking corpus-wide linking (`pipeline.linking.algorithm`).

Speakers are unit directions sharing a common component, so that two speakers' centroids have a
cosine similarity around `between` (GE2E's are about 0.6-0.75: its embeddings are non-negative);
each (recording, speaker) centroid is its speaker's direction plus noise, at a cosine around
`within` to it. Recordings hold `speakers_per_recording` distinct speakers; speakers recur across
recordings with Zipf-like popularity (a few hosts in many recordings, many guests in a few)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SyntheticCentroids:
    centroids: np.ndarray  # (N, dim) float32 unit
    recordings: np.ndarray  # (N,) int64 recording index
    speakers: np.ndarray  # (N,) int64 true speaker
    speech_seconds: np.ndarray  # (N,) float64


def synthetic_centroids(
    num_centroids: int,
    num_speakers: int,
    dim: int = 256,
    speakers_per_recording: tuple[int, int] = (2, 4),
    between: float = 0.65,
    within: float = 0.975,
    popularity: float = 1.0,
    seed: int = 0,
) -> SyntheticCentroids:
    rng = np.random.default_rng(seed)
    common = rng.standard_normal(dim)
    common /= np.linalg.norm(common)
    own = rng.standard_normal((num_speakers, dim)).astype(np.float32)
    own -= np.outer(own @ common, common).astype(np.float32)
    own /= np.linalg.norm(own, axis=1, keepdims=True)
    # cos(speaker_a, speaker_b) = between for directions sqrt(between) * common + sqrt(1 - between) * own
    directions = (np.sqrt(between) * common[None, :] + np.sqrt(1 - between) * own).astype(np.float32)
    weights = 1.0 / np.arange(1, num_speakers + 1) ** popularity
    weights /= weights.sum()
    sizes, total = [], 0
    while total < num_centroids:
        size = int(rng.integers(speakers_per_recording[0], speakers_per_recording[1] + 1))
        size = min(size, num_centroids - total)
        sizes.append(size)
        total += size
    sizes = np.array(sizes)
    recordings = np.repeat(np.arange(len(sizes)), sizes)
    # distinct speakers within a recording, drawn by popularity: draw with replacement, then redraw
    # the repeats uniformly among all speakers until none is left (vectorised: millions in seconds)
    cumulative = np.cumsum(weights)
    speakers = np.minimum(np.searchsorted(cumulative, rng.random(num_centroids)), num_speakers - 1).astype(np.int64)
    for _ in range(100):
        order = np.lexsort((speakers, recordings))
        repeated = np.zeros(num_centroids, dtype=bool)
        repeated[order[1:]] = (recordings[order[1:]] == recordings[order[:-1]]) & (
            speakers[order[1:]] == speakers[order[:-1]]
        )
        if not repeated.any():
            break
        speakers[repeated] = rng.integers(num_speakers, size=int(repeated.sum()))
    # noise orthogonal-ish to the direction, scaled so that cos(centroid, direction) ~ within
    spread = np.sqrt(1 - within**2) / within
    centroids = rng.standard_normal((num_centroids, dim), dtype=np.float32)  # the noise, then in place
    centroids *= (spread * rng.uniform(0.6, 1.4, size=num_centroids) / np.linalg.norm(centroids, axis=1)).astype(
        np.float32
    )[:, None]
    centroids += directions[speakers]
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    speech = rng.uniform(1.0, 120.0, size=num_centroids)
    return SyntheticCentroids(centroids.astype(np.float32), recordings.astype(np.int64), speakers, speech)


def purity_coverage(labels: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Unweighted purity and coverage of `labels` against `truth` (-1 labels: each its own cluster)."""
    labels = labels.copy()
    lone = labels < 0
    labels[lone] = labels.max(initial=0) + 1 + np.arange(lone.sum())
    pairs, counts = np.unique(np.stack([labels, truth], 1), axis=0, return_counts=True)
    by_label = np.zeros(pairs[:, 0].max() + 1)
    np.maximum.at(by_label, pairs[:, 0], counts)
    by_truth = np.zeros(pairs[:, 1].max() + 1)
    np.maximum.at(by_truth, pairs[:, 1], counts)
    return float(by_label.sum() / len(labels)), float(by_truth.sum() / len(labels))
