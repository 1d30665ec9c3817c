"""`nemo`: a NeMo Sortformer diarizer checkpoint (`diar_sortformer_4spk-v1.nemo`,
`diar_streaming_sortformer_4spk-v2.1.nemo`, or your own `.nemo`) loaded with NeMo's own classes and
run at corpus scale. Needs the optional extra: `pip install 'corpus-diarization[nemo]'`.

The package's top level is torch-free: the registry checks the checkpoint here before Ray, torch or
NeMo load; importing `model` registers the factory."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from pipeline.errors import BadParameterError, UsageError

MODEL_NAME = "nemo"
INSTALL = "pip install 'corpus-diarization[nemo]'"
OPTIONS = ("checkpoint",)


def check_options(checkpoint: str | None = None, **options: Any) -> dict[str, Any]:
    """The options checked without loading weights: NeMo is installed, a checkpoint is given and
    (when local) is a `.nemo` archive."""
    if options:
        raise BadParameterError(f"unknown option {sorted(options)[0]!r}; the options are {list(OPTIONS)}")
    if importlib.util.find_spec("nemo") is None:
        raise UsageError(f"--model {MODEL_NAME} needs NeMo: {INSTALL}")
    if not checkpoint:
        raise UsageError(f"--model {MODEL_NAME} needs --checkpoint PATH|URI of a .nemo file (a Sortformer diarizer)")
    from pipeline.io.checkpoints import check_checkpoint_place

    local = check_checkpoint_place(checkpoint)  # a URI is checked to exist; its archive is read on the actors
    if local is not None:
        check_archive(local)
    return {"checkpoint": checkpoint}


def check_archive(path: Path) -> Path:
    """`path` is a `.nemo` archive (a tar file holding `model_config.yaml`); one line otherwise."""
    import tarfile

    if path.is_dir():
        if (path / "config.yaml").is_file():
            raise UsageError(f"{path} is a folder with a config.yaml (a pyannote pipeline?): use --model pyannote")
        raise UsageError(f"{path} is a folder: --model {MODEL_NAME} takes a .nemo file")
    if not path.is_file():
        raise UsageError(f"checkpoint not found: {path}")
    if not tarfile.is_tarfile(path):
        raise UsageError(f"{path} is not a .nemo archive (NeMo saves a tar file with model_config.yaml)")
    target = model_target(path)
    if target is not None and not target.endswith("SortformerEncLabelModel"):
        raise UsageError(
            f"{path} holds a {target.rsplit('.', 1)[-1]}, not a Sortformer diarizer (SortformerEncLabelModel)"
        )
    return path


def model_target(path: Path) -> str | None:
    """The model class a `.nemo` names (`target:` of its `model_config.yaml`), read from the archive."""
    import tarfile

    import yaml

    with tarfile.open(path) as archive:  # NeMo writes uncompressed tars; the config is a small member
        for member in archive:
            if member.isfile() and member.name.endswith("model_config.yaml"):
                document = yaml.safe_load(archive.extractfile(member).read().decode("utf-8"))
                return str(document.get("target")) if isinstance(document, dict) and document.get("target") else None
    raise UsageError(f"{path} is not a .nemo archive: it holds no model_config.yaml")


__all__ = ["MODEL_NAME", "check_options"]
