"""NeMo's diarization inference configuration: `DiarizeConfig`, `InternalDiarizeConfig` and the
post-processing parameters that NeMo reads from a YAML file with a top-level `parameters:` block."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Optional

import fsspec
import yaml

from pipeline.errors import BadParameterError

if TYPE_CHECKING:  # torch loads with the models, not with a config (the CLI's checks come first)
    import torch


@dataclass
class PostProcessingParams:
    """Binarisation of per-frame speaker probabilities (NeMo's names and defaults).

    `onset`/`offset`: hysteresis thresholds to start/end a speaker turn; `pad_onset`/`pad_offset`:
    seconds added before/after each turn; `min_duration_on`: shorter turns are dropped;
    `min_duration_off`: shorter gaps between two turns of one speaker are filled."""

    onset: float = 0.5
    offset: float = 0.5
    pad_onset: float = 0.0
    pad_offset: float = 0.0
    min_duration_on: float = 0.0
    min_duration_off: float = 0.0

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "PostProcessingParams":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise BadParameterError(f"unknown post-processing parameters {unknown}; expected some of {sorted(known)}")
        params = {}
        for name, value in values.items():
            try:
                params[name] = float(value)
            except (TypeError, ValueError):
                raise BadParameterError(f"post-processing parameter {name}={value!r}: give a number") from None
        return cls(**params).checked()

    def checked(self) -> "PostProcessingParams":
        """These parameters, or BadParameterError naming the first one no turn could come from."""
        for name in ("onset", "offset"):  # thresholds on probabilities
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise BadParameterError(
                    f"post-processing parameter {name}={value:g}: must be from 0 to 1 (a probability threshold)"
                )
        for name in ("min_duration_on", "min_duration_off"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise BadParameterError(f"post-processing parameter {name}={value:g}: must be seconds >= 0")
        for name in ("pad_onset", "pad_offset"):
            if not math.isfinite(getattr(self, name)):
                raise BadParameterError(
                    f"post-processing parameter {name}={getattr(self, name):g}: must be a finite number of seconds"
                )
        return self


def postprocessing_presets() -> dict[str, str]:
    """The presets shipped with the package (`pipeline/conf/NAME.yaml`), by name -> path."""
    from importlib.resources import files

    folder = files("pipeline") / "conf"
    return {entry.name.removesuffix(".yaml"): str(entry) for entry in folder.iterdir() if entry.name.endswith(".yaml")}


def load_postprocessing_from_yaml(path: Optional[str]) -> Optional[PostProcessingParams]:
    """NeMo's post-processing YAML: `parameters: {onset: .., offset: .., ...}`, from a path or URI, or a
    preset by name (`postprocessing_presets`: `"nemo"` is NeMo's defaults). None gives None: the
    model's own defaults (`default_postprocessing`), which are the best general setting."""
    if path is None:
        return None
    presets = postprocessing_presets()
    path = presets.get(path, path)
    if "/" not in path and "://" not in path and not path.endswith((".yaml", ".yml")) and not os.path.exists(path):
        raise BadParameterError(
            f"no post-processing preset {path!r}: the presets are {sorted(presets)}, or give a YAML path"
        )
    with fsspec.open(path, "r", encoding="utf-8") as f:
        document = yaml.safe_load(f) or {}
    if not isinstance(document, dict) or not isinstance(document.get("parameters", {}), dict):
        raise BadParameterError(f"{path}: expected a mapping with a 'parameters:' block")
    return PostProcessingParams.from_dict(document.get("parameters") or {})


@dataclass
class InternalDiarizeConfig:
    """State `diarize_generator` keeps while it runs; restored by `_diarize_on_end`."""

    device: Optional[torch.device] = None
    dtype: Optional[torch.dtype] = None
    training_mode: bool = False
    logging_level: Optional[Any] = None
    dither_value: float = 0.0
    pad_to_value: int = 0
    temp_dir: Optional[str] = None
    manifest_filepath: Optional[str] = None


@dataclass
class DiarizeConfig:
    """Inference configuration (NeMo's fields and defaults).

    This project's additions: for clustering models, `max_num_speakers` / `min_num_speakers` bound
    the estimated speaker count when a manifest row gives no `num_speakers`, and `num_speakers` fixes
    the count of every file (over the manifest's); `return_embeddings` adds each file's speaker
    centroids to what `diarize()` returns; `exclusive` gives one speaker at a time (pyannote's
    exclusive diarization: overlapped speech goes to the most active speaker)."""

    session_len_sec: float = -1
    batch_size: int = 1
    num_workers: int = 1
    postprocessing_yaml: Optional[str] = None
    verbose: bool = True
    include_tensor_outputs: bool = False
    return_embeddings: bool = False
    exclusive: bool = False
    postprocessing_params: Optional[PostProcessingParams] = None
    max_num_speakers: int = 8
    min_num_speakers: int = 1
    num_speakers: Optional[int] = None
    _internal: Optional[InternalDiarizeConfig] = field(default=None, repr=False)


# pyannote's names for NeMo's speaker-count fields: both spellings are taken by `diarize()`,
# `run_corpus` and the CLI (`--min-speakers` / `--min-num-speakers`, ...).
SPEAKER_COUNT_ALIASES = {"min_speakers": "min_num_speakers", "max_speakers": "max_num_speakers"}


def with_nemo_speaker_counts(options: dict[str, Any]) -> dict[str, Any]:
    """`options` with pyannote's speaker-count names renamed to NeMo's; both spellings of one is an error."""
    renamed = dict(options)
    for alias, name in SPEAKER_COUNT_ALIASES.items():
        if alias in renamed:
            if name in renamed:
                raise BadParameterError(f"give {alias} or {name}, not both (they are one option)")
            renamed[name] = renamed.pop(alias)
    return renamed


def speaker_count_bounds(diarcfg: DiarizeConfig, manifest_count: Optional[int]) -> tuple[Optional[int], int, int]:
    """(known count or None, min, max) for one file: `diarcfg.num_speakers` over the manifest's
    `num_speakers`; otherwise the estimate is bounded by `min_num_speakers`..`max_num_speakers`."""
    known = diarcfg.num_speakers or manifest_count or None
    return known, max(1, int(diarcfg.min_num_speakers or 1)), int(diarcfg.max_num_speakers)
