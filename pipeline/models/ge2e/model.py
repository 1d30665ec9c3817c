"""`ge2e`, the light model: a clustering diarizer in the spirit of NeMo's, from weights shipped in
PyPI packages (Silero VAD, resemblyzer's GE2E encoder).

`_diarize_forward` (neural, batched, the part that runs on GPU actors): speech probabilities for
every 32 ms frame, then GE2E embeddings of the 1.6 s windows (hop 0.384 s) that contain speech, all
windows of all recordings of the batch through the encoder together.
`_diarize_results` (CPU): NME-SC clustering of each recording's windows, per-frame speaker
probabilities (speech probability x the speaker's share of the windows covering the frame), then
NeMo's binarisation into turns, and each speaker's centroid: the renormalised mean of its windows'
unit GE2E embeddings (`pipeline.speakers`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, List

import numpy as np
import torch
from torch import nn

from pipeline.api import SpkDiarizationMixin
from pipeline.config import DiarizeConfig, PostProcessingParams, speaker_count_bounds
from pipeline.models.contract import ForwardItem, RecordingBatch, RecordingResult, report_forward_progress
from pipeline.models.ge2e import MODEL_NAME
from pipeline.models.ge2e.config import ClusteringConfig, GE2EConfig, check_options
from pipeline.models.ge2e.encoder import (
    HOP_SAMPLES,
    WINDOW_FRAMES,
    MelFrontend,
    SpeakerEncoder,
    frame_power,
    volume_gain,
)
from pipeline.models.ge2e.vad import FRAME_SAMPLES, FRAME_SECONDS, SileroVAD, centred_stretch
from pipeline.models.registry import register_model
from pipeline.postprocessing import (
    first_appearance_order,
    regions_to_turns,
    speaker_names,
    speaker_regions,
    turns_to_segments,
)
from pipeline.speakers import speaker_centroids

# GE2E windows are 160 mel frames (1.6 s) = 50 VAD frames of 32 ms.
WINDOW_VAD_FRAMES = WINDOW_FRAMES * HOP_SAMPLES // FRAME_SAMPLES


@dataclass
class GE2EForward(ForwardItem):
    """`_diarize_forward`'s item for one recording (N = VAD frames of 32 ms, W = embedded windows)."""

    speech_probs: np.ndarray  # (N,) float32 speech probability per frame
    embeddings: np.ndarray  # (W, 256) float32 GE2E embeddings of the windows with enough speech
    window_starts: np.ndarray  # (W,) int64 first VAD frame of each window


@register_model(MODEL_NAME)
class GE2EDiarizer(nn.Module, SpkDiarizationMixin):
    frame_seconds = FRAME_SECONDS
    embedding_size = SpeakerEncoder.embedding_size
    # GE2E centroids: the best mean global-DER increase over the dev split's three recurring-speaker
    # corpora, 12 and 24 speakers (0.82 before, chosen on the 12-speaker one alone): docs/linking.md.
    linking_threshold = 0.84

    def __init__(self, config: GE2EConfig | None = None, **options: Any):
        nn.Module.__init__(self)
        SpkDiarizationMixin.__init__(self)
        self.config = self.check_options(config, **options)
        self.vad = SileroVAD.pretrained()
        self.mel = MelFrontend()
        self.encoder = SpeakerEncoder.pretrained()
        self.eval()

    check_options = staticmethod(check_options)  # the torch-free check (`config.py`)

    # ------------------------------------------------------------ neural part (GPU actors)

    @torch.inference_mode()
    def _diarize_forward(self, batch: RecordingBatch) -> List[GE2EForward]:
        """Padded batch -> one `GE2EForward` per recording (its docstring gives the shapes)."""
        audio, lengths = batch.audio, batch.audio_lengths.to(batch.audio.device)
        # A DC offset reads as speech to the VAD's lowest STFT bin: each recording's mean is removed,
        # a stretch at a time (`centred_stretch`), so the batch is never copied whole.
        dc = audio.sum(1) / lengths.clamp_min(1)
        frame_counts = torch.div(lengths + FRAME_SAMPLES - 1, FRAME_SAMPLES, rounding_mode="floor")
        speech = self.vad(audio, lengths=lengths, dc=dc)
        speech = speech * (torch.arange(speech.shape[1], device=speech.device)[None] < frame_counts[:, None])
        gain = volume_gain(self._frame_power(audio, lengths, dc), speech)
        starts, recordings = self._speech_windows(speech, frame_counts)
        embeddings = self._embed_windows(audio, lengths, dc, gain, starts, recordings)

        speech_np, starts_np = speech.float().cpu().numpy(), starts.cpu().numpy()
        recordings_np, embeddings_np = recordings.cpu().numpy(), embeddings.float().cpu().numpy()
        return [
            GE2EForward(
                uniq_id=batch.uniq_ids[b],
                offset=float(batch.offsets[b]),
                num_speakers=int(batch.num_speakers[b]),
                num_samples=int(lengths[b]),
                speech_probs=speech_np[b, : int(frame_counts[b])],
                embeddings=embeddings_np[recordings_np == b],
                window_starts=starts_np[recordings_np == b],
            )
            for b in range(audio.shape[0])
        ]

    def _frame_power(self, audio: torch.Tensor, lengths: torch.Tensor, dc: torch.Tensor) -> torch.Tensor:
        """(B, ceil(T / 512)) mean power of each VAD frame of the DC-free recordings, computed one
        stretch of `embedding_chunk_seconds` (whole frames) at a time."""
        step = max(1, int(self.config.embedding_chunk_seconds / FRAME_SECONDS))
        total = audio.shape[1]
        # Filled in place: a list of small results between the large stretches fragments the heap
        # (a 10-hour file then kept 2 GB more).
        power = audio.new_zeros(audio.shape[0], -(-total // FRAME_SAMPLES))
        for first in range(0, power.shape[1], step):
            stretch = centred_stretch(
                audio, first * FRAME_SAMPLES, min((first + step) * FRAME_SAMPLES, total), lengths, dc
            )
            power[:, first : first + step] = frame_power(stretch, FRAME_SAMPLES)
        return power

    def _embed_windows(
        self,
        audio: torch.Tensor,
        lengths: torch.Tensor,
        dc: torch.Tensor,
        gain: torch.Tensor,
        starts: torch.Tensor,
        recordings: torch.Tensor,
    ) -> torch.Tensor:
        """GE2E embeddings of the given windows of the DC-free recordings. Mel features are computed
        one stretch of `embedding_chunk_seconds` at a time, so memory stays bounded for recordings
        of any length."""
        embeddings = audio.new_zeros(len(starts), SpeakerEncoder.embedding_size)
        chunk_frames = max(1, int(self.config.embedding_chunk_seconds / FRAME_SECONDS))
        window_samples = WINDOW_VAD_FRAMES * FRAME_SAMPLES
        last_frame = int(starts.max()) + 1 if len(starts) else 0
        for first_frame in range(0, last_frame, chunk_frames):
            # the share of the timeline embedded (most of a forward's time; the VAD before it is not counted)
            report_forward_progress(first_frame / last_frame)
            selected = ((starts >= first_frame) & (starts < first_frame + chunk_frames)).nonzero(as_tuple=True)[0]
            if len(selected) == 0:
                continue
            begin = first_frame * FRAME_SAMPLES
            end = max(begin, min(begin + chunk_frames * FRAME_SAMPLES + window_samples, audio.shape[1]))
            stretch = centred_stretch(audio, begin, end, lengths, dc)
            stretch = torch.nn.functional.pad(stretch, (0, max(0, window_samples - stretch.shape[1])))
            mels = self.mel(stretch) * gain[:, None, None] ** 2
            mel_starts = (starts[selected] - first_frame) * FRAME_SAMPLES // HOP_SAMPLES
            mel_starts = mel_starts.clamp(max=mels.shape[1] - WINDOW_FRAMES)
            windows = mels.unfold(1, WINDOW_FRAMES, 1).transpose(2, 3)[recordings[selected], mel_starts]
            embeddings[selected] = self.encoder.embed_windows(windows, self.config.encoder_chunk)
        return embeddings

    def _speech_windows(self, speech: torch.Tensor, frame_counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Start frames and recording indices of the windows worth embedding (enough speech)."""
        hop = self.config.hop_vad_frames
        is_speech = (speech > self.config.speech_threshold).float()
        cumulative = torch.nn.functional.pad(is_speech.cumsum(1), (1, WINDOW_VAD_FRAMES))
        starts = torch.arange(0, speech.shape[1], hop, device=speech.device)
        ends = torch.minimum(starts[None] + WINDOW_VAD_FRAMES, frame_counts[:, None])
        speech_frames = cumulative.gather(1, ends) - cumulative[:, starts]
        keep = (speech_frames >= self.config.min_window_speech * WINDOW_VAD_FRAMES) & (
            starts[None] < frame_counts[:, None]
        )
        recordings, index = keep.nonzero(as_tuple=True)
        return starts[index], recordings

    # ------------------------------------------------------------ post-processing (CPU)

    default_postprocessing = PostProcessingParams()  # NeMo's

    def _diarize_results(
        self, outputs: List[GE2EForward], uniq_ids: List[str], diarcfg: DiarizeConfig
    ) -> List[RecordingResult]:
        params = diarcfg.postprocessing_params or self.default_postprocessing
        results = []
        for output in outputs:
            known, _, high = speaker_count_bounds(diarcfg, output.num_speakers)
            clustering = replace(self.config.clustering, max_num_speakers=high)
            output = replace(output, num_speakers=known or 0)
            labels = self.cluster_labels(output, clustering)
            probabilities = self.speaker_probabilities(output, clustering, labels)
            regions = speaker_regions(probabilities, self.frame_seconds, params)
            results.append(
                RecordingResult(
                    segments=turns_to_segments(regions_to_turns(regions, output.offset)),
                    activity=torch.from_numpy(probabilities[:, first_appearance_order(regions)])[None],
                    # cluster k is column k: its windows' centroid, under its turns' name
                    speaker_embeddings=speaker_centroids(output.embeddings, labels, speaker_names(regions)),
                )
            )
        return results

    def cluster_labels(self, output: GE2EForward, clustering: ClusteringConfig) -> np.ndarray:
        """The speaker label (0..k-1) of each embedded window of one recording."""
        embeddings = np.asarray(output.embeddings, dtype=np.float32)
        if len(embeddings) == 0:
            return np.zeros(0, dtype=np.int64)
        # Imported here: clustering (scikit-learn, SciPy: ~1.5 s to import) runs in output processing,
        # so a model actor, which only forwards, starts without it.
        from pipeline.models.ge2e.clustering import spectral_cluster

        return spectral_cluster(embeddings, output.num_speakers or None, clustering)

    def speaker_probabilities(
        self, output: GE2EForward, clustering: ClusteringConfig, labels: np.ndarray | None = None
    ) -> np.ndarray:
        """(frames, speakers) probabilities of one recording from its forward outputs (column k:
        cluster label k of `labels`, computed when not given)."""
        speech = np.asarray(output.speech_probs, dtype=np.float32)
        embeddings = np.asarray(output.embeddings, dtype=np.float32)
        if len(embeddings) == 0:
            return np.zeros((len(speech), 0), dtype=np.float32)
        labels = self.cluster_labels(output, clustering) if labels is None else labels
        num_clusters = int(labels.max()) + 1
        # Each window spreads its label over the frames it covers with a Hann taper, so that the
        # centre of a window counts more than its edges.
        impulses = np.zeros((len(speech) + WINDOW_VAD_FRAMES, num_clusters), dtype=np.float32)
        np.add.at(impulses, (np.asarray(output.window_starts), labels), 1.0)
        taper = np.hanning(WINDOW_VAD_FRAMES + 2)[1:-1].astype(np.float32)
        # Each window's taper laid from its first frame on (a causal FIR filter of the impulses).
        support = np.stack(
            [np.convolve(column.astype(np.float64), taper)[: len(speech)] for column in impulses.T], axis=1
        )
        total = support.sum(1)
        if (total == 0).any():  # speech far from any embedded window takes the nearest window's labels
            from scipy.ndimage import distance_transform_edt  # output processing only: kept off the actor's start

            _, (nearest,) = distance_transform_edt(total == 0, return_indices=True)
            support = support[nearest]
        share = support / support.max(1, keepdims=True).clip(1e-8)
        return (speech[:, None] * share**self.config.overlap_sharpness).astype(np.float32)
