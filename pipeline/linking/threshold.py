"""Which cosine threshold `link-speakers` merges speakers at: the one the caller gives, else the one
the run's model declares (`linking_threshold`, chosen on a dev split), else one learnt from the corpus.

The learnt threshold: the speakers of one recording were told apart by the diarization, so the
similarities between their centroids are the model's own scale for two different voices on this
corpus's audio; two groups merge when they are more alike than `ESTIMATE_QUANTILE` of those pairs.
On the dev split's three corpora with recurring speakers it cost 2.25 (`default`) and 1.94 (`ge2e`)
points of global DER over per-recording DER, against 0.20 and 1.46 at the models' declared thresholds
(docs/journal/2026-12-07-linking-with-more-speakers.md): a fixed threshold chosen on data like the
corpus is better, so the learnt one is for models that declare none (a plug-in, a pyannote pipeline's
embeddings) or for a corpus unlike any dev split (`--threshold estimate`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.errors import UsageError
from pipeline.linking import ESTIMATE
from pipeline.models.registry import linking_threshold

# The 95th percentile: the best of the estimators measured on the dev split's corpora for both built-in
# models (mean increase 2.10 points, against 2.19 for median + 1.5 robust spreads and 2.27 for + 2).
ESTIMATE_QUANTILE = 0.95
MIN_PAIRS = 10  # fewer pairs of two speakers of one recording say too little of the model's scale
MAX_PAIRS = 200_000  # a seeded sample above this: the quantile needs no more, the memory stays bounded
BLOCK_PAIRS = 50_000  # pairs per matrix product (two (block, D) float32 slices)
# A recording's speakers are paired up to this many apart in its rows: every pair of recordings with up to
# 65 speakers, and no more than 64 n pairs (and passes) for a corpus a model gave thousands in one recording.
MAX_RANKS = 64


@dataclass(frozen=True)
class LinkingThreshold:
    value: float
    source: str  # why this value, as `link-speakers` prints it and `linking.json` records it
    pairs: int | None = None  # within-recording speaker pairs it was learnt from (None: not learnt)


def within_recording_pairs(recordings: np.ndarray, max_ranks: int = MAX_RANKS) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i, j), i before j, of two rows of one recording (`recordings`: a code per row): every
    such pair, in recordings of up to `max_ranks` + 1 rows."""
    order = np.argsort(recordings, kind="stable")
    codes = np.asarray(recordings)[order]
    firsts, seconds = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for offset in range(1, min(len(codes), max_ranks + 1)):  # one pass per rank apart, not per row
        same = np.flatnonzero(codes[offset:] == codes[:-offset])
        if len(same) == 0:  # sorted: no recording has more than `offset` rows
            break
        firsts.append(order[same])
        seconds.append(order[same + offset])
    return np.concatenate(firsts), np.concatenate(seconds)


def within_recording_similarities(
    centroids: np.ndarray,
    recordings: np.ndarray,
    rows: np.ndarray | None = None,
    max_pairs: int = MAX_PAIRS,
    seed: int = 0,
) -> np.ndarray:
    """Cosine similarities of the unit centroids of two different speakers of one recording, among
    `rows` (indices; default all), a seeded sample of `max_pairs` of them when there are more. The
    centroids are read in place: a corpus's matrix is not copied."""
    rows = np.arange(len(recordings)) if rows is None else np.asarray(rows)
    first, second = within_recording_pairs(np.asarray(recordings)[rows])
    first, second = rows[first], rows[second]
    if len(first) > max_pairs:
        keep = np.sort(np.random.default_rng(seed).choice(len(first), max_pairs, replace=False))
        first, second = first[keep], second[keep]
    return np.concatenate(
        [
            np.einsum("ij,ij->i", centroids[first[s : s + BLOCK_PAIRS]], centroids[second[s : s + BLOCK_PAIRS]])
            for s in range(0, len(first), BLOCK_PAIRS)
        ]
        or [np.zeros(0, np.float32)]
    )


def estimated_threshold(centroids: np.ndarray, recordings: np.ndarray, rows: np.ndarray, why: str) -> LinkingThreshold:
    """The threshold learnt from the corpus's `rows` (module docstring); a UsageError naming the fix
    when too few recordings have two speakers to learn it from."""
    similarities = within_recording_similarities(centroids, recordings, rows)
    if len(similarities) < MIN_PAIRS:
        raise UsageError(
            f"{why}, and the corpus has {len(similarities)} pairs of speakers of one recording to learn a "
            f"threshold from (at least {MIN_PAIRS} needed): pass --threshold, chosen on a dev corpus with "
            "benchmarks/speaker_linking_accuracy.py --model"
        )
    value = round(float(np.quantile(similarities, ESTIMATE_QUANTILE)), 4)
    source = (
        f"estimated from this corpus: the {ESTIMATE_QUANTILE * 100:g}th percentile of {len(similarities)} "
        f"similarities between two speakers of one recording; {why}"
    )
    return LinkingThreshold(value, source, len(similarities))


def linking_threshold_for(
    given: float | str | None, model: str | None, centroids: np.ndarray, recordings: np.ndarray, linked: np.ndarray
) -> LinkingThreshold:
    """The threshold to link the corpus's unit `centroids` (one per speaker, `recordings` a code per
    row) at: `given` (a number, or "estimate"), else `model`'s declared one, else learnt from the
    `linked` rows (bool: the speakers with enough speech to link)."""
    rows = np.flatnonzero(linked)
    if given == ESTIMATE:
        return estimated_threshold(centroids, recordings, rows, "asked for (--threshold estimate)")
    if given is not None:
        return LinkingThreshold(float(given), "given by the caller")
    declared = linking_threshold(model) if model else None
    if declared is not None:
        return LinkingThreshold(declared, f"declared by model {model!r}, chosen on its dev split")
    return estimated_threshold(centroids, recordings, rows, f"model {model!r} declares no linking_threshold")
