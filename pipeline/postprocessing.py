"""Per-frame speaker probabilities to speaker turns, with NeMo's post-processing parameters.

Shared by every model whose forward pass gives (frames, speakers) probabilities. Vectorised over
frames: hysteresis is a forward fill, turns come from run boundaries.
"""

from __future__ import annotations

import math
from typing import Iterable, Iterator

import numpy as np

from pipeline.config import PostProcessingParams
from pipeline.io.rttm import Turn, format_segment


def hysteresis(probabilities: np.ndarray, onset: float, offset: float) -> np.ndarray:
    """Active where p > onset, inactive where p < offset, otherwise as the previous frame; for a
    (frames,) or (frames, speakers) array."""
    state = np.where(probabilities > onset, 1, np.where(probabilities < offset, 0, -1))
    if state.size == 0:
        return state.astype(bool)
    state[0] = np.maximum(state[0], 0)
    frames = np.arange(len(state)).reshape((-1,) + (1,) * (state.ndim - 1))
    last_decided = np.maximum.accumulate(np.where(state >= 0, frames, 0), axis=0)
    return np.take_along_axis(state, last_decided, axis=0) == 1


def active_regions(active: np.ndarray, frame_seconds: float) -> np.ndarray:
    """(n, 2) start/end seconds of the runs of True in a 1-D boolean array."""
    padded = np.concatenate([[False], active, [False]]).astype(np.int8)
    changes = np.flatnonzero(np.diff(padded))
    return changes.reshape(-1, 2).astype(np.float64) * frame_seconds


def clean_regions(regions: np.ndarray, params: PostProcessingParams, total_seconds: float) -> np.ndarray:
    """Pad each region, fill gaps shorter than `min_duration_off` (overlaps from padding merge too),
    then drop regions shorter than `min_duration_on` (pyannote's order)."""
    if len(regions) == 0:
        return regions
    regions = regions + np.array([-params.pad_onset, params.pad_offset])
    regions = regions.clip(0.0, total_seconds)
    keep_gap = regions[1:, 0] - regions[:-1, 1] >= max(params.min_duration_off, 1e-9)
    starts = np.concatenate([[True], keep_gap])
    ends = np.concatenate([keep_gap, [True]])
    regions = np.stack([regions[starts, 0], np.maximum.accumulate(regions[:, 1])[ends]], axis=1)
    return regions[regions[:, 1] - regions[:, 0] >= max(params.min_duration_on, 1e-9)]


def speaker_regions(probabilities: np.ndarray, frame_seconds: float, params: PostProcessingParams) -> list[np.ndarray]:
    """Cleaned (n, 2) regions in seconds for each column of (frames, speakers) probabilities."""
    total = probabilities.shape[0] * frame_seconds
    active = hysteresis(probabilities, params.onset, params.offset)
    return [
        clean_regions(active_regions(active[:, k], frame_seconds), params, total) for k in range(probabilities.shape[1])
    ]


def first_appearance_order(regions: list[np.ndarray]) -> list[int]:
    """Column indices sorted by when their speaker first speaks; silent columns last."""
    firsts = [r[0, 0] if len(r) else np.inf for r in regions]
    return [int(k) for k in np.argsort(firsts, kind="stable")]


def speaker_names(regions: list[np.ndarray]) -> dict[int, str]:
    """The name each column with speech gets in the turns (`regions_to_turns`): `speaker_k`, k in
    order of first appearance; silent columns get none. A model maps its cluster labels to the
    speakers of its segments with this (`pipeline.speakers.speaker_centroids`)."""
    speaking = [k for k in first_appearance_order(regions) if len(regions[k])]
    return {k: f"speaker_{rank}" for rank, k in enumerate(speaking)}


def regions_to_turns(regions: list[np.ndarray], offset: float = 0.0) -> list[Turn]:
    """Turns sorted by time, shifted by `offset`, speakers named `speaker_k` with k in order of
    first appearance."""
    turns = [
        Turn(float(start + offset), float(end + offset), name)
        for k, name in speaker_names(regions).items()
        for start, end in regions[k]
    ]
    return sorted(turns, key=lambda t: (t.start, t.end, t.speaker))


def turns_to_segments(turns: list[Turn]) -> list[str]:
    return [format_segment(t.start, t.end, int(t.speaker.rsplit("_", 1)[1])) for t in turns]


def elementary_intervals(turns: list[Turn]) -> Iterator[tuple[float, float, list[Turn]]]:
    """(start, end, the turns speaking throughout) for each stretch between consecutive turn
    boundaries, speakers by the time they began; one sweep over the sorted boundaries."""
    events = sorted([(t.start, 1, i) for i, t in enumerate(turns)] + [(t.end, 0, i) for i, t in enumerate(turns)])
    active: dict[int, Turn] = {}
    for (time, kind, index), (following, _, _) in zip(events, events[1:] + [(math.inf, 0, -1)]):
        if kind:
            active[index] = turns[index]
        else:
            active.pop(index, None)
        if following > time and active and following < math.inf:
            yield time, following, sorted(active.values(), key=lambda t: (t.start, t.speaker))


def merge_adjacent(pieces: Iterable[Turn]) -> list[Turn]:
    """Consecutive pieces of one speaker that touch, joined into one turn."""
    merged: list[Turn] = []
    for piece in pieces:
        if merged and merged[-1].speaker == piece.speaker and abs(merged[-1].end - piece.start) < 1e-9:
            merged[-1] = Turn(merged[-1].start, piece.end, piece.speaker)
        else:
            merged.append(piece)
    return merged


def exclusive_turns(
    turns: list[Turn], activity: np.ndarray | None = None, frame_seconds: float | None = None, offset: float = 0.0
) -> list[Turn]:
    """One speaker at a time (pyannote's exclusive diarization, for aligning words to speakers),
    covering exactly the speech of `turns`. Where turns overlap, each activity frame goes to the
    speaker among them with the highest activity (`activity`: (frames, speakers), column k is
    `speaker_k`, frame i starting at `offset + i * frame_seconds`); without activity, the speaker who
    was speaking first keeps the floor."""
    pieces: list[Turn] = []
    for start, end, speaking in elementary_intervals(turns):
        if len(speaking) == 1 or activity is None or not frame_seconds:
            pieces.append(Turn(start, end, speaking[0].speaker))
            continue
        names = sorted({t.speaker for t in speaking})
        columns = [int(name.rsplit("_", 1)[1]) for name in names]
        first = int((start - offset) // frame_seconds)
        last = int(np.ceil((end - offset) / frame_seconds))
        frames = np.clip(np.arange(first, max(last, first + 1)), 0, len(activity) - 1)
        winners = np.asarray(activity)[frames][:, columns].argmax(axis=1)
        bounds = np.clip(offset + np.arange(first, first + len(frames) + 1) * frame_seconds, start, end)
        for k, winner in enumerate(winners):
            if bounds[k + 1] > bounds[k]:
                pieces.append(Turn(float(bounds[k]), float(bounds[k + 1]), names[winner]))
    return merge_adjacent(pieces)
