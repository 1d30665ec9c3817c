"""Speaker diarization of speech corpora at scale: NeMo's diarization inference API, an offline
default model, and a Ray Data pipeline for whole corpora on object storage."""

__all__ = [
    "DiarizationMixin",
    "DiarizeConfig",
    "InternalDiarizeConfig",
    "PostProcessingParams",
    "RunOptions",
    "SpkDiarizationMixin",
    "available_models",
    "load_model",
    "load_postprocessing_from_yaml",
    "manifest_for_audio",
    "register_model",
    "run_corpus",
    "to_annotation",
]


# Where each public name lives. Imported on first use (PEP 562): `import pipeline` stays cheap, so a
# Ray worker that runs a CPU stage (`pipeline.corpus.inputs`, ...) or the CLI refusing a bad option
# does not pay for torch, Ray Data or pyannote it never uses.
_HOMES = {
    "DiarizationMixin": ".api",
    "SpkDiarizationMixin": ".api",
    "DiarizeConfig": ".config",
    "InternalDiarizeConfig": ".config",
    "PostProcessingParams": ".config",
    "load_postprocessing_from_yaml": ".config",
    "available_models": ".models",
    "load_model": ".models",
    "register_model": ".models",
    "manifest_for_audio": ".io.audio_listing",
    "run_corpus": ".corpus.plan",
    "RunOptions": ".corpus.options",
    "to_annotation": ".export.formats",
}


def __getattr__(name: str):
    """A public name from its home module, or a submodule (`pipeline.io.audio`) imported on first use."""
    import importlib
    import importlib.util

    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name], __name__), name)
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
