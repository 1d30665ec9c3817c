"""`pyannote`: a pyannote.audio speaker-diarization pipeline folder (pyannote's `config.yaml` with its
segmentation, embedding and PLDA folders, as `pyannote/speaker-diarization-community-1` ships),
run at corpus scale. Needs the optional extra: `pip install 'corpus-diarization[pyannote]'`.

The package's top level is torch-free: the registry checks the checkpoint here before Ray, torch or
pyannote load; importing `model` registers the factory."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from pipeline.errors import BadParameterError, UsageError

MODEL_NAME = "pyannote"
INSTALL = "pip install 'corpus-diarization[pyannote]'"
CONFIG_NAME = "config.yaml"
OPTIONS = ("checkpoint", "segmentation_batch_size", "embedding_batch_size")


def check_options(checkpoint: str | None = None, **options: Any) -> dict[str, Any]:
    """The options checked without loading weights: pyannote.audio is installed, the checkpoint is
    given and (when local) is a pyannote diarization pipeline; batch sizes are whole numbers >= 1."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise BadParameterError(f"unknown option {unknown[0]!r}; the options are {list(OPTIONS)}")
    for name, value in options.items():
        if value is not None and (not str(value).isdigit() or int(value) < 1):
            raise BadParameterError(f"{name} must be a whole number >= 1, got {value!r}")
    if importlib.util.find_spec("pyannote.audio") is None:
        raise UsageError(f"--model {MODEL_NAME} needs pyannote.audio: {INSTALL}")
    if not checkpoint:
        raise UsageError(
            f"--model {MODEL_NAME} needs --checkpoint DIR|URI: a pyannote pipeline folder "
            f"(its {CONFIG_NAME} with segmentation/, embedding/, plda/)"
        )
    from pipeline.io.checkpoints import check_checkpoint_place

    local = check_checkpoint_place(checkpoint)  # a URI is checked to exist; its folder is read on the actors
    if local is not None:
        pipeline_config(local)
    return {"checkpoint": checkpoint, **options}


def pipeline_config(path: Path) -> Path:
    """The `config.yaml` of the pipeline folder (or file) `path`, checked to be a speaker-diarization
    pipeline; one line naming what it is otherwise."""
    import yaml

    if path.suffix == ".nemo":
        raise UsageError(f"{path} is a NeMo checkpoint, not a pyannote pipeline: use --model nemo")
    config = path / CONFIG_NAME if path.is_dir() else path
    if not config.is_file():
        what = "does not exist" if not path.exists() else f"has no {CONFIG_NAME}"
        raise UsageError(f"{path} {what}: --checkpoint takes a pyannote pipeline folder (with {CONFIG_NAME})")
    try:
        document = yaml.safe_load(config.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as error:
        raise UsageError(f"{config} is not a pyannote pipeline config: {str(error).splitlines()[0]}") from None
    name = str(((document or {}).get("pipeline") or {}).get("name", "")) if isinstance(document, dict) else ""
    if not name.endswith("SpeakerDiarization"):
        kind = f"a {name} pipeline" if name else "not a pipeline config (no pipeline: name:)"
        raise UsageError(f"{config} is {kind}; --model {MODEL_NAME} runs a pyannote SpeakerDiarization pipeline")
    return config


__all__ = ["MODEL_NAME", "check_options"]
