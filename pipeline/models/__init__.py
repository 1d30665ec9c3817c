"""Diarization models behind `SpkDiarizationMixin`: the registry (`registry`), the contract between
a model and the pipeline (`contract`), and the two built-ins, `default` (`overlap_aware/`) and
`ge2e` (`ge2e/`)."""

from pipeline.models.registry import (
    ENTRY_POINT_GROUP,
    UnknownModelError,
    available_models,
    check_model_arguments,
    load_model,
    register_model,
    resolve_model_factory,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "UnknownModelError",
    "available_models",
    "check_model_arguments",
    "load_model",
    "register_model",
    "resolve_model_factory",
]
