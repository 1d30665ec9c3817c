"""`nemo`: a NeMo Sortformer `.nemo` behind the diarization mixin.

The checkpoint is restored with NeMo's own `ModelPT.restore_from` (the class its config names), and
its own modules run in the hooks:

- `_diarize_forward` (actor, GPU when there is one): the batch through the model's preprocessor,
  FastConformer encoder and Sortformer head (`forward_infer`), or its own chunked
  `forward_streaming` when the checkpoint is a streaming one (`streaming_mode`, v2.x: arrival-order
  speaker cache, so a long recording keeps its speakers across chunks). NeMo scales a batch by its
  largest sample; here each recording is scaled by its own (as NeMo does a batch of one), so that a
  recording's labels never depend on its batch neighbours. Each item keeps the recording's own
  frames of the sigmoid posteriors, (frames, 4) at 80 ms.
- `_diarize_results` (CPU task): NeMo's own `_diarize_output_processing` (`ts_vad_post_processing`
  with the run's `postprocessing_params`, NeMo's onset/offset/padding/min durations), turns sorted
  by start.

Sortformer labels at most `max_num_of_spks` speakers per recording (4 for NVIDIA's checkpoints);
speaker counts (`num_speakers`, `min`/`max`) do not constrain it, as in NeMo; it gives no speaker
embeddings (so `link-speakers` has nothing to link)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, List

import numpy as np
import torch
from torch import nn

from pipeline.api import SpkDiarizationMixin
from pipeline.config import DiarizeConfig, PostProcessingParams
from pipeline.errors import UsageError
from pipeline.io.checkpoints import local_checkpoint
from pipeline.io.rttm import parse_segment
from pipeline.models.contract import ForwardItem, RecordingBatch, RecordingResult
from pipeline.models.nemo_sortformer import MODEL_NAME, check_archive, check_options
from pipeline.models.registry import register_model
from pipeline.postprocessing import turns_to_segments


@dataclass
class SortformerForward(ForwardItem):
    """`_diarize_forward`'s item for one recording (F frames of 80 ms, S = the model's speakers)."""

    posteriors: np.ndarray  # (F, S) float32 sigmoid speaker activity, speakers in arrival order


@register_model(MODEL_NAME)
class NemoSortformerDiarizer(nn.Module, SpkDiarizationMixin):
    def __init__(self, checkpoint: str):
        nn.Module.__init__(self)
        SpkDiarizationMixin.__init__(self)
        check_options(checkpoint)
        from nemo.collections.asr.models import SortformerEncLabelModel
        from nemo.core.classes import ModelPT

        path = check_archive(local_checkpoint(checkpoint))
        model = ModelPT.restore_from(str(path), map_location="cpu")
        if not isinstance(model, SortformerEncLabelModel):
            raise UsageError(f"{checkpoint} holds a {type(model).__name__}, not a Sortformer diarizer")
        # Inference only: no feature dither, no padding to a multiple (NeMo's `diarize()` does the same).
        featurizer = getattr(model.preprocessor, "featurizer", None)
        if featurizer is not None:
            featurizer.dither, featurizer.pad_to = 0.0, 0
        self.sortformer = model.eval()
        config = model._cfg
        self.max_speakers = int(config.max_num_of_spks)
        self.frame_seconds = float(config.preprocessor.window_stride) * int(config.encoder.subsampling_factor)

    @property
    def streaming(self) -> bool:
        return bool(self.sortformer.streaming_mode)

    # ------------------------------------------------------------------ forward (actors)

    @torch.inference_mode()
    def _diarize_forward(self, batch: RecordingBatch) -> List[SortformerForward]:
        model = self.sortformer
        device = next(model.parameters()).device
        audio, lengths = batch.audio.to(device), batch.audio_lengths.to(device)
        if not self.streaming:  # NeMo's scaling (1 / (max + eps)), per recording
            audio = audio / (audio.max(dim=1, keepdim=True).values + model.eps)
        features, feature_lengths = model.preprocessor(input_signal=audio, length=lengths)
        features = features[:, :, : int(feature_lengths.max())]
        if self.streaming:
            posteriors = model.forward_streaming(features, feature_lengths)
            frames = torch.ceil(feature_lengths.float() / int(model._cfg.encoder.subsampling_factor)).long()
        else:
            encoded, frames = model.frontend_encoder(processed_signal=features, processed_signal_length=feature_lengths)
            posteriors = model.forward_infer(encoded, frames)
        posteriors = posteriors.float().cpu().numpy()
        return [
            SortformerForward(
                uniq_id=uniq_id,
                offset=float(offset),
                num_speakers=int(count),
                num_samples=int(length),
                posteriors=np.ascontiguousarray(posteriors[i, : min(int(frames[i]), posteriors.shape[1])]),
            )
            for i, (uniq_id, offset, count, length) in enumerate(
                zip(batch.uniq_ids, batch.offsets.tolist(), batch.num_speakers.tolist(), batch.audio_lengths.tolist())
            )
        ]

    # ------------------------------------------------------------------ output processing (CPU)

    def _diarize_results(
        self, outputs: List[Any], uniq_ids: List[str], diarcfg: DiarizeConfig
    ) -> List[RecordingResult]:
        from omegaconf import OmegaConf

        # None: NeMo's own defaults, which `PostProcessingParams()` are.
        params = OmegaConf.create(dataclasses.asdict(diarcfg.postprocessing_params or PostProcessingParams()))
        nemo_config = SimpleNamespace(postprocessing_params=params, include_tensor_outputs=False)
        results = []
        for item in outputs:
            self.sortformer._diarize_audio_rttm_map = {item.uniq_id: {"offset": item.offset}}
            posteriors = torch.from_numpy(item.posteriors)[None]
            (lines,) = self.sortformer._diarize_output_processing(posteriors, [item.uniq_id], nemo_config)
            turns = sorted((parse_segment(line) for line in lines), key=lambda t: (t.start, t.end, t.speaker))
            results.append(RecordingResult(segments=turns_to_segments(turns), activity=posteriors))
        return results


__all__ = ["NemoSortformerDiarizer", "SortformerForward"]
