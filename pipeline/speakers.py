"""One embedding centroid per (recording, speaker): what a model gives for corpus-wide speaker linking.

The contract (`InternalDiarizeConfig.speaker_embeddings`): when a caller sets
`diarcfg._internal.speaker_embeddings = {}`, a model's `_diarize_output_processing` fills it with
`{uniq_id: {"speaker_k": (centroid float32 (dim,), num_embeddings)}}`, one entry per speaker of the
segments it returns, under the same names. A model without speaker embeddings leaves it empty, and
a corpus run then writes an empty `speakers/` table (`summary.json` says so).

A model calls `speaker_centroids(embeddings, labels, names)` with its window embeddings, their
cluster labels and the name each cluster got in the segments (`pipeline.postprocessing.speaker_names`
for models that go through `regions_to_turns`), then `record_speaker_embeddings(diarcfg, uniq_id, ...)`.

`diarize()` users get them with `diarize_with_embeddings(model, audio, ...)`, or by passing
`override_config=DiarizeConfig(_internal=InternalDiarizeConfig(speaker_embeddings={}))` and reading
`config._internal.speaker_embeddings` afterwards."""

from __future__ import annotations

import pickle
from typing import Any, Mapping, Sequence

import numpy as np

Centroids = dict[str, tuple[np.ndarray, int]]


def speaker_centroids(embeddings: np.ndarray, labels: np.ndarray, names: Mapping[int, str] | Sequence[str | None]) -> Centroids:
    """`{name: (centroid, num_embeddings)}`: for each cluster label that has a name, the mean of the
    L2-normalised embeddings labelled with it, normalised again (float32, unit norm). Labels without
    a name (a cluster that produced no turn) and names without embeddings are left out."""
    embeddings = np.asarray(embeddings, dtype=np.float32)
    labels = np.asarray(labels).reshape(-1)
    if embeddings.ndim != 2 or len(embeddings) != len(labels):
        raise ValueError(f"embeddings {embeddings.shape} and labels {labels.shape} do not match (one label per embedding row)")
    if not isinstance(names, Mapping):
        names = {label: name for label, name in enumerate(names) if name is not None}
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    usable = np.isfinite(norms[:, 0]) & (norms[:, 0] > 1e-12)
    normed = np.where(usable[:, None], embeddings / np.where(usable[:, None], norms, 1.0), 0.0)
    centroids: Centroids = {}
    for label, name in names.items():
        members = (labels == label) & usable
        count = int(members.sum())
        if not count:
            continue
        mean = normed[members].mean(0, dtype=np.float64)
        norm = float(np.linalg.norm(mean))
        if norm > 1e-12:
            centroids[str(name)] = ((mean / norm).astype(np.float32), count)
    return centroids


def wants_speaker_embeddings(diarcfg: Any) -> bool:
    internal = getattr(diarcfg, "_internal", None)
    return internal is not None and getattr(internal, "speaker_embeddings", None) is not None


def record_speaker_embeddings(diarcfg: Any, uniq_id: str, centroids: Centroids) -> None:
    """Store one recording's centroids in `diarcfg._internal.speaker_embeddings` when the caller asked."""
    if wants_speaker_embeddings(diarcfg):
        diarcfg._internal.speaker_embeddings[str(uniq_id)] = dict(centroids)


def diarize_with_embeddings(model: Any, audio: Any, **diarize_kwargs) -> tuple[Any, dict[str, Centroids]]:
    """`model.diarize(audio, **diarize_kwargs)` and the speaker centroids per uniq_id (empty for a
    model without embeddings). Takes `diarize()`'s keyword arguments (`batch_size`, `num_workers`,
    `max_num_speakers`, `postprocessing_yaml`, `include_tensor_outputs`, ...)."""
    from .config import DiarizeConfig, InternalDiarizeConfig, load_postprocessing_from_yaml

    embeddings: dict[str, Centroids] = {}
    yaml_path = diarize_kwargs.pop("postprocessing_yaml", None)
    config = DiarizeConfig(
        batch_size=diarize_kwargs.pop("batch_size", 1),
        num_workers=diarize_kwargs.pop("num_workers", 1),
        verbose=diarize_kwargs.pop("verbose", False),
        include_tensor_outputs=diarize_kwargs.pop("include_tensor_outputs", False),
        postprocessing_yaml=yaml_path,
        postprocessing_params=load_postprocessing_from_yaml(yaml_path),
        **diarize_kwargs,
        _internal=InternalDiarizeConfig(speaker_embeddings=embeddings),
    )
    segments = model.diarize(audio, override_config=config)
    return segments, embeddings


def pack_centroids(centroids: Centroids) -> bytes:
    """One recording's centroids as bytes, to travel in a Ray block to the sink."""
    return pickle.dumps({name: (np.asarray(vector, dtype=np.float32), int(count)) for name, (vector, count) in centroids.items()},
                        protocol=pickle.HIGHEST_PROTOCOL)


def unpack_centroids(data: bytes | None) -> Centroids:
    return pickle.loads(data) if data else {}
