"""`pyannote`: a pyannote.audio `SpeakerDiarization` pipeline folder behind the diarization mixin.

pyannote applies a pipeline to one file at a time; here the neural steps run on the model actors
for every recording of a batch together, and everything after them is pyannote's own code:

- `_diarize_forward` (actor, GPU when there is one): the segmentation model on the sliding chunks of
  all recordings of the batch in one stream of batches (the chunks `pyannote.audio.Inference` makes
  for each file, through its own `infer`), then one embedding per (chunk, local speaker) of all
  recordings in one stream of batches, cropped and masked exactly as `SpeakerDiarization.
  get_embeddings` does (overlap excluded when the pipeline says so);
- `_diarize_results` (CPU task): the pipeline's own `apply` with those two steps answered from the
  forward item: binarisation, speaker counting, its clustering (VBx with its PLDA, or AHC),
  reconstruction, `min_duration_off`, and its `exclusive_speaker_diarization` when
  `exclusive=True`. So one file gives the turns `Pipeline.apply` gives it (`tests/test_pyannote_
  pipeline.py` checks the same checkpoint both ways).

pyannote's post-processing parameters are the pipeline's own (its `config.yaml`'s `params`); NeMo's
onset/offset (`postprocessing_yaml`) do not apply to it. Speakers are renamed `SPEAKER_00` ->
`speaker_0`; their centroids are the pipeline's (`speaker_embeddings`), unit-normalised."""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from typing import Any, List

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.api import SpkDiarizationMixin
from pipeline.config import DiarizeConfig, speaker_count_bounds
from pipeline.errors import UsageError
from pipeline.io.checkpoints import local_checkpoint
from pipeline.io.rttm import Turn
from pipeline.models.contract import ForwardItem, RecordingBatch, RecordingResult
from pipeline.models.pyannote_pipeline import MODEL_NAME, check_options, pipeline_config
from pipeline.models.registry import register_model
from pipeline.postprocessing import turns_to_segments

# pyannote.audio 4 reports usage to its servers unless told not to; a corpus run never calls out.
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")
# pyannote decodes files with torchcodec; here it is always given decoded waveforms, so a torchcodec
# without its FFmpeg libraries (its warning at import) does not matter.
warnings.filterwarnings("ignore", message=r"\s*torchcodec is not installed correctly")


@dataclass
class PyannoteForward(ForwardItem):
    """`_diarize_forward`'s item for one recording (C chunks, F frames, S local speakers, D dims)."""

    segmentations: np.ndarray  # (C, F, S) float32 local speaker activity (binary for powerset models)
    embeddings: np.ndarray  # (C, S, D) float32 one per (chunk, local speaker); NaN where too short


def sliding_chunks(waveform: torch.Tensor, window: int, step: int) -> torch.Tensor:
    """(C, 1, window) chunks of a (1, T) waveform: whole windows every `step` samples, then the rest
    zero-padded to a window, as `pyannote.audio.Inference.slide` makes them."""
    samples = waveform.shape[1]
    chunks = [waveform.unfold(1, window, step).permute(1, 0, 2)] if samples >= window else []
    whole = chunks[0].shape[0] if chunks else 0
    if samples < window or (samples - window) % step > 0:
        last = waveform[:, whole * step :]
        chunks.append(F.pad(last, (0, window - last.shape[1]))[None])
    return torch.cat(chunks)


def _speakers_pipeline_class():
    from pyannote.audio.pipelines import SpeakerDiarization

    class PrecomputedSpeakerDiarization(SpeakerDiarization):
        """pyannote's pipeline whose neural steps answer with what `_diarize_forward` computed (carried
        in the file dict), and which keeps the clustering's assignment for the centroid counts."""

        def get_segmentations(self, file, hook=None):
            return file["precomputed_segmentations"]

        def get_embeddings(self, file, binary_segmentations, exclude_overlap=False, hook=None):
            return file["precomputed_embeddings"]

        def reconstruct(self, segmentations, hard_clusters, count):
            self.last_hard_clusters = np.array(hard_clusters)
            return super().reconstruct(segmentations, hard_clusters, count)

    return SpeakerDiarization, PrecomputedSpeakerDiarization


@register_model(MODEL_NAME)
class PyannotePipelineDiarizer(nn.Module, SpkDiarizationMixin):
    exclusive_output = True  # `exclusive=True` takes the pipeline's own exclusive diarization

    def __init__(
        self,
        checkpoint: str,
        segmentation_batch_size: int | None = None,
        embedding_batch_size: int | None = None,
    ):
        nn.Module.__init__(self)
        SpkDiarizationMixin.__init__(self)
        check_options(
            checkpoint, segmentation_batch_size=segmentation_batch_size, embedding_batch_size=embedding_batch_size
        )
        from pyannote.audio import Pipeline

        config = pipeline_config(local_checkpoint(checkpoint))
        pipeline = Pipeline.from_pretrained(config)
        speaker_diarization, precomputed = _speakers_pipeline_class()
        if not isinstance(pipeline, speaker_diarization):
            raise UsageError(f"{checkpoint} is a {type(pipeline).__name__}, not a SpeakerDiarization pipeline")
        if pipeline.klustering == "OracleClustering":
            raise UsageError(f"{checkpoint} clusters with OracleClustering, which needs reference labels")
        pipeline.__class__ = precomputed
        self.pipeline = pipeline
        self.segmentation_batch_size = int(segmentation_batch_size or pipeline.segmentation_batch_size)
        self.embedding_batch_size = int(embedding_batch_size or pipeline.embedding_batch_size)
        # Registered so that `.to(device)`, `.eval()` and `parameters()` reach the networks.
        self.segmentation_model = pipeline._segmentation.model
        embedding = getattr(pipeline._embedding, "model_", None)
        self.embedding_model = embedding if isinstance(embedding, nn.Module) else None
        self.frame_seconds = float(pipeline._segmentation.model.receptive_field.step)
        self.embedding_size = int(pipeline._embedding.dimension)

    def _apply(self, fn, *args, **kwargs):
        module = super()._apply(fn, *args, **kwargs)
        parameter = next(self.segmentation_model.parameters(), None)
        if parameter is not None:  # pyannote's Inference and embedding wrappers keep their own device
            self.pipeline.to(parameter.device)
        return module

    # ------------------------------------------------------------------ forward (actors)

    @torch.inference_mode()
    def _diarize_forward(self, batch: RecordingBatch) -> List[PyannoteForward]:
        inference = self.pipeline._segmentation
        sample_rate = inference.model.audio.sample_rate
        window = inference.model.audio.get_num_samples(inference.duration)
        step = round(inference.step * sample_rate)
        lengths = [int(n) for n in batch.audio_lengths]
        waveforms = [batch.audio[i, :n][None] for i, n in enumerate(lengths)]
        chunks = [sliding_chunks(waveform, window, step) for waveform in waveforms]
        stream = torch.cat(chunks)
        scores = np.concatenate(
            [
                inference.infer(stream[start : start + self.segmentation_batch_size])
                for start in range(0, len(stream), self.segmentation_batch_size)
            ]
        )
        per_recording = np.split(scores, np.cumsum([len(c) for c in chunks])[:-1])
        embeddings = self._embed(waveforms, per_recording)
        return [
            PyannoteForward(
                uniq_id=uniq_id,
                offset=float(offset),
                num_speakers=int(count),
                num_samples=length,
                segmentations=segmentations.astype(np.float32),
                embeddings=recording_embeddings,
            )
            for uniq_id, offset, count, length, segmentations, recording_embeddings in zip(
                batch.uniq_ids, batch.offsets.tolist(), batch.num_speakers.tolist(), lengths, per_recording, embeddings
            )
        ]

    def _embed(self, waveforms: list[torch.Tensor], segmentations: list[np.ndarray]) -> list[np.ndarray]:
        """One embedding per (chunk, local speaker) of every recording, in batches across recordings,
        each chunk cropped and masked as `SpeakerDiarization.get_embeddings` does it for one file."""
        pipeline = self.pipeline
        pairs = [
            pair
            for waveform, scores in zip(waveforms, segmentations)
            for pair in self._waveforms_and_masks(waveform, scores)
        ]
        vectors = [
            pipeline._embedding(
                torch.vstack([w for w, _ in pairs[start : start + self.embedding_batch_size]]),
                masks=torch.vstack([m for _, m in pairs[start : start + self.embedding_batch_size]]),
            )
            for start in range(0, len(pairs), self.embedding_batch_size)
        ]
        flat = np.vstack(vectors).astype(np.float32) if vectors else np.zeros((0, self.embedding_size), np.float32)
        shapes = [scores.shape[0] * scores.shape[2] for scores in segmentations]
        return [
            part.reshape(scores.shape[0], scores.shape[2], -1)
            for part, scores in zip(np.split(flat, np.cumsum(shapes)[:-1]), segmentations)
        ]

    def _waveforms_and_masks(self, waveform: torch.Tensor, scores: np.ndarray):
        from pyannote.core import SlidingWindow, SlidingWindowFeature

        pipeline = self.pipeline
        inference = pipeline._segmentation
        binary = self._binarized(SlidingWindowFeature(scores, self._chunk_frames()))
        num_chunks, num_frames, _ = binary.data.shape
        if pipeline.embedding_exclude_overlap:
            num_samples = inference.duration * pipeline._embedding.sample_rate
            min_num_frames = math.ceil(num_frames * pipeline._embedding.min_num_samples / num_samples)
            clean = binary.data * (np.sum(binary.data, axis=2, keepdims=True) < 2)
        else:
            min_num_frames, clean = -1, binary.data
        file = {"waveform": waveform.cpu(), "sample_rate": inference.model.audio.sample_rate}
        frames: SlidingWindow = binary.sliding_window
        for c in range(num_chunks):
            cropped, _ = pipeline._audio.crop(file, frames[c], mode="pad")
            masks = np.nan_to_num(binary.data[c], nan=0.0).astype(np.float32)
            clean_masks = np.nan_to_num(clean[c], nan=0.0).astype(np.float32)
            for mask, clean_mask in zip(masks.T, clean_masks.T):
                used = clean_mask if np.sum(clean_mask) > min_num_frames else mask
                yield cropped[None], torch.from_numpy(np.ascontiguousarray(used))[None]

    def _chunk_frames(self):
        from pyannote.core import SlidingWindow

        inference = self.pipeline._segmentation
        return SlidingWindow(start=0.0, duration=inference.duration, step=inference.step)

    def _binarized(self, segmentations):
        from pyannote.audio.utils.signal import binarize

        if self.pipeline._segmentation.model.specifications.powerset:
            return segmentations
        return binarize(segmentations, onset=self.pipeline.segmentation.threshold, initial_state=False)

    # ------------------------------------------------------------------ output processing (CPU)

    def _diarize_results(
        self, outputs: List[Any], uniq_ids: List[str], diarcfg: DiarizeConfig
    ) -> List[RecordingResult]:
        return [self._result(item, diarcfg) for item in outputs]

    def _result(self, item: PyannoteForward, diarcfg: DiarizeConfig) -> RecordingResult:
        from pyannote.core import SlidingWindowFeature

        known, low, high = speaker_count_bounds(diarcfg, item.num_speakers)
        captured: dict[str, Any] = {}
        file = {
            "uri": item.uniq_id,
            "precomputed_segmentations": SlidingWindowFeature(item.segmentations, self._chunk_frames()),
            "precomputed_embeddings": item.embeddings,
        }
        self.pipeline.last_hard_clusters = None

        def keep(step: str, artefact: Any, file: Any = None, **progress: Any) -> None:
            if step == "discrete_diarization":
                captured[step] = artefact

        output = self.pipeline.apply(file, num_speakers=known, min_speakers=low, max_speakers=high, hook=keep)
        annotation = output.exclusive_speaker_diarization if diarcfg.exclusive else output.speaker_diarization
        labels = output.speaker_diarization.labels()  # SPEAKER_00, ... in the order of the centroids
        names = {label: f"speaker_{k}" for k, label in enumerate(labels)}
        turns = sorted(
            (
                Turn(round(item.offset + s.start, 3), round(item.offset + s.end, 3), names[label])
                for s, _, label in annotation.itertracks(yield_label=True)
            ),
            key=lambda t: (t.start, t.end, t.speaker),
        )
        return RecordingResult(
            segments=turns_to_segments(turns),
            activity=self._activity(captured.get("discrete_diarization"), len(labels)),
            speaker_embeddings=self._centroids(output.speaker_embeddings, captured.get("discrete_diarization"), labels),
        )

    @staticmethod
    def _active_clusters(discrete) -> np.ndarray:
        """The clusters that made turns (the ones pyannote names SPEAKER_00, ... in order)."""
        return np.flatnonzero(np.nansum(discrete.data, axis=0) > 0) if discrete is not None else np.zeros(0, int)

    def _activity(self, discrete, speakers: int) -> torch.Tensor | None:
        if discrete is None:
            return None
        columns = self._active_clusters(discrete)[:speakers]
        return torch.from_numpy(np.nan_to_num(discrete.data[:, columns]).astype(np.float32))[None]

    def _centroids(self, centroids, discrete, labels) -> dict[str, tuple[np.ndarray, int]]:
        if centroids is None or not len(labels):
            return {}
        clusters = self._active_clusters(discrete)
        hard = self.pipeline.last_hard_clusters
        found = {}
        for k in range(len(labels)):  # pyannote pads missing centroids with zeros: left out
            vector = np.asarray(centroids[k], dtype=np.float32)
            norm = float(np.linalg.norm(vector))
            if not np.isfinite(norm) or norm == 0.0:
                continue
            count = int(np.sum(hard == clusters[k])) if hard is not None and k < len(clusters) else 1
            found[f"speaker_{k}"] = (vector / norm, max(count, 1))
        return found


__all__ = ["PyannotePipelineDiarizer", "PyannoteForward", "sliding_chunks"]
