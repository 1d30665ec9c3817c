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
    "run_corpus",
    "to_annotation",
]


def __getattr__(name: str):
    """`run_corpus` and `to_annotation` are imported on first use: they bring in Ray and pyannote,
    which `diarize()` users don't need."""
    if name == "run_corpus":
        from .corpus import run_corpus

        return run_corpus
    if name == "to_annotation":  # pyannote.core on first use too
        from .export import to_annotation

        return to_annotation
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
