"""Speaker diarization of speech corpora at scale: NeMo's diarization inference API, an offline
default model, and a Ray Data pipeline for whole corpora on object storage."""

from .api import DiarizationMixin, SpkDiarizationMixin
from .config import DiarizeConfig, InternalDiarizeConfig, PostProcessingParams, load_postprocessing_from_yaml
from .models import available_models, load_model, register_model

__all__ = [
    "DiarizationMixin",
    "DiarizeConfig",
    "InternalDiarizeConfig",
    "PostProcessingParams",
    "SpkDiarizationMixin",
    "available_models",
    "load_model",
    "load_postprocessing_from_yaml",
    "register_model",
]
