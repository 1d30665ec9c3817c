"""NeMo's speaker-diarization inference API: `SpkDiarizationMixin` (template method) and the legacy
`DiarizationMixin`.

`diarize()`/`diarize_generator()` fix the control flow; models override the hooks. The Ray pipeline
calls the same hooks (`_diarize_forward` on model actors, `_diarize_output_processing` in CPU
tasks), so a model that works with `diarize()` runs at corpus scale with no extra code.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from abc import ABC, abstractmethod
from collections import OrderedDict
from typing import Any, Callable, Iterator, List, Optional, Sequence, Union

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from pipeline.config import (
    DiarizeConfig,
    InternalDiarizeConfig,
    load_postprocessing_from_yaml,
    with_nemo_speaker_counts,
)
from pipeline.io.audio import SAMPLE_RATE
from pipeline.io.dataset import DiarizationDataset
from pipeline.io.manifest import MANIFEST_SUFFIXES, ManifestRow, read_manifest, rows_from_paths, write_manifest
from pipeline.io.rttm import parse_segment
from pipeline.models.contract import (
    ModelTraits,
    RecordingBatch,
    RecordingResult,
    move_to_device,
    nemo_output,
    results_from_nemo,
)
from pipeline.postprocessing import exclusive_turns, turns_to_segments

logger = logging.getLogger("pipeline")

AudioInput = Union[str, List[str], np.ndarray, List[np.ndarray], DataLoader]
DiarizeOutput = Union[List[List[str]], tuple]


def _check_override_config(config: Any) -> None:
    """NeMo's checks, with NeMo's messages."""
    if not hasattr(config, "_internal"):
        raise ValueError(
            "`diarize_cfg must have an `_internal` argument, which must be of an object of type "
            "InternalDiarizeConfig or its subclass."
        )
    if config._internal is not None and not isinstance(config._internal, InternalDiarizeConfig):
        raise ValueError("`diarize_cfg._internal` must be of an object of type InternalDiarizeConfig or its subclass")


def _is_manifest_path(audio: Sequence[Any]) -> bool:
    return len(audio) == 1 and isinstance(audio[0], str) and audio[0].lower().endswith(MANIFEST_SUFFIXES)


class SpkDiarizationMixin(ABC):
    """Inference API of NeMo's diarization models.

    Subclasses implement `_diarize_forward` (neural part, whole padded batch at once) and
    `_diarize_results` (per-file turns, activity and speaker centroids; or NeMo's
    `_diarize_output_processing`); the other hooks have working defaults. The contract that lets one
    model run in `diarize()` and in a corpus run on Ray, with the batch and item types, is
    `pipeline.models.contract`'s docstring. Build a model with a factory that takes keyword options
    (`--model-arg key=value`) and, when it has weights to load, `checkpoint=` (a path or URI);
    register it with `@register_model`, give it as `package.module:factory`, or install it as an
    entry point of `corpus_diarization.models` (see `pipeline.models.registry`). It need not be an
    `nn.Module`."""

    # What the pipeline reads of a model (`pipeline.models.contract.ModelTraits`); None: not declared.
    frame_seconds: Optional[float] = None
    embedding_size: Optional[int] = None
    linking_threshold: Optional[float] = None
    exclusive_output: Optional[bool] = None

    def __init__(self) -> None:
        self._diarize_audio_rttm_map: "OrderedDict[str, ManifestRow]" = OrderedDict()

    @torch.inference_mode()
    def diarize(
        self,
        audio: AudioInput,
        batch_size: int = 1,
        include_tensor_outputs: bool = False,
        postprocessing_yaml: Optional[str] = None,
        num_workers: int = 1,
        verbose: bool = False,
        override_config: Optional[DiarizeConfig] = None,
        return_embeddings: bool = False,
        exclusive: bool = False,
        hook: Optional[Callable[..., Any]] = None,
        **config_kwargs,
    ) -> DiarizeOutput:
        """Speaker turns per input file: a list of `"begin end speaker_k"` strings per file, or with
        `include_tensor_outputs=True` a tuple `(segments, per_frame_speaker_probabilities)`; with
        `return_embeddings=True` one more element, per file `{"speaker_k": (centroid, count)}`.
        `exclusive=True`: one speaker at a time, the same speech covered (for word-level alignment).
        `config_kwargs` are `DiarizeConfig` fields (`num_speakers`, `min_num_speakers`,
        `max_num_speakers`, or pyannote's `min_speakers` / `max_speakers`). `hook`, as pyannote's, is
        called after each batch as `hook("diarize", None, total=files, completed=files_done)`."""
        config_kwargs = with_nemo_speaker_counts(config_kwargs)
        if override_config is None:
            config = DiarizeConfig(
                batch_size=batch_size,
                num_workers=num_workers,
                verbose=verbose,
                include_tensor_outputs=include_tensor_outputs,
                return_embeddings=return_embeddings,
                exclusive=exclusive,
                postprocessing_yaml=postprocessing_yaml,
                postprocessing_params=load_postprocessing_from_yaml(postprocessing_yaml),
                **config_kwargs,
            )
        else:
            _check_override_config(override_config)
            config = override_config
            if config.postprocessing_params is None:
                config.postprocessing_params = load_postprocessing_from_yaml(config.postprocessing_yaml)

        results: Any = None
        done = 0
        for outputs in self.diarize_generator(audio, override_config=config):
            done += len(outputs[0] if isinstance(outputs, tuple) else outputs)
            if hook is not None:
                hook("diarize", None, total=len(self._diarize_audio_rttm_map) or None, completed=done)
            if isinstance(outputs, tuple):
                if results is None:
                    results = tuple([] for _ in outputs)
                for collected, part in zip(results, outputs):
                    collected.extend(part)
            else:
                results = (results or []) + list(outputs)
        if results is None:
            return ([], []) if config.include_tensor_outputs else []
        return results

    def diarize_generator(self, audio: AudioInput, override_config: Optional[DiarizeConfig]) -> Iterator[DiarizeOutput]:
        """Yields `_diarize_output_processing` results one batch at a time."""
        config = override_config if override_config is not None else DiarizeConfig()
        _check_override_config(config)
        if config._internal is None:
            config._internal = InternalDiarizeConfig()
        if config.postprocessing_params is None:
            config.postprocessing_params = load_postprocessing_from_yaml(config.postprocessing_yaml)

        self._diarize_on_begin(audio, config)
        try:
            with tempfile.TemporaryDirectory() as temp_dir:
                config._internal.temp_dir = temp_dir
                if isinstance(audio, DataLoader):
                    dataloader = audio
                else:
                    dataloader = self._diarize_input_processing(audio, config)
                ordered_ids = list(self._diarize_audio_rttm_map.keys())
                start = 0
                for batch in tqdm(dataloader, desc="Diarizing", disable=not config.verbose):
                    batch = move_to_device(batch, config._internal.device)
                    uniq_ids = batch_ids(batch)
                    if uniq_ids is None:
                        uniq_ids = ordered_ids[start : start + config.batch_size]
                    start += len(uniq_ids)
                    outputs = self._diarize_forward(batch)
                    results = self._diarize_results(outputs, uniq_ids, config)
                    if config.exclusive and not ModelTraits.of(self).exclusive_output:
                        rows = [self._diarize_audio_rttm_map.get(uniq_id) for uniq_id in uniq_ids]
                        offsets = [float(row.offset or 0.0) if row is not None else 0.0 for row in rows]
                        frame_seconds = ModelTraits.of(self).frame_seconds
                        results = [exclusive_result(r, offset, frame_seconds) for r, offset in zip(results, offsets)]
                    yield nemo_output(results, config)
                    del batch, outputs
        finally:
            self._diarize_on_end(config)

    # ----------------------------------------------------------------- hooks

    def _diarize_on_begin(self, audio: AudioInput, diarcfg: DiarizeConfig) -> None:
        """Remember the model's mode, switch to eval, freeze feature randomness, quiet logging."""
        internal = diarcfg._internal
        internal.training_mode = bool(getattr(self, "training", False))
        parameter = next(iter(self.parameters()), None) if hasattr(self, "parameters") else None
        if parameter is not None:
            internal.device, internal.dtype = parameter.device, parameter.dtype
        featurizer = getattr(getattr(self, "preprocessor", None), "featurizer", None)
        if featurizer is not None:
            internal.dither_value = getattr(featurizer, "dither", 0.0)
            internal.pad_to_value = getattr(featurizer, "pad_to", 0)
            featurizer.dither, featurizer.pad_to = 0.0, 0
        if hasattr(self, "eval"):
            self.eval()
        internal.logging_level = logger.level
        logger.setLevel(logging.WARNING)

    def _diarize_input_processing(self, audio: AudioInput, diarcfg: DiarizeConfig) -> DataLoader:
        """Any accepted input to a DataLoader; fills `self._diarize_audio_rttm_map` in input order."""
        if not isinstance(audio, (list, tuple)):
            audio = [audio]
        if len(audio) == 0:
            raise ValueError("Input `audio` is empty")
        if _is_manifest_path(audio):
            diarcfg._internal.manifest_filepath = audio[0]
            rows = read_manifest(audio[0])
            self._diarize_audio_rttm_map = OrderedDict((row.uniq_id, row) for row in rows)
        elif all(isinstance(item, (str, os.PathLike)) for item in audio):
            self._diarize_audio_rttm_map = self._input_audio_to_rttm_processing([os.fspath(a) for a in audio])
        elif all(isinstance(item, (np.ndarray, torch.Tensor)) for item in audio):
            paths = self._write_arrays(audio, diarcfg._internal.temp_dir)
            self._diarize_audio_rttm_map = self._input_audio_to_rttm_processing(paths)
        else:
            raise ValueError(
                f"Input `audio` is of type {type(audio[0])}. Only `str` (path to an audio file or a "
                "manifest), `np.ndarray` and `torch.Tensor` (16 kHz mono), or a DataLoader are supported."
            )
        rows = list(self._diarize_audio_rttm_map.values())
        check_audio_exists(rows)
        ds_config = self._diarize_input_manifest_processing(rows, diarcfg._internal.temp_dir, diarcfg)
        return self._setup_diarize_dataloader(ds_config)

    def _input_audio_to_rttm_processing(self, audio_files: List[str]) -> "OrderedDict[str, ManifestRow]":
        """Manifest rows for plain paths: `uniq_id` is the base name without extension (NeMo);
        files that share a base name get a deterministic suffix instead of overwriting each other."""
        return OrderedDict((row.uniq_id, row) for row in rows_from_paths(audio_files))

    def _diarize_input_manifest_processing(
        self, audio_files: List[ManifestRow], temp_dir: str, diarcfg: DiarizeConfig
    ) -> dict[str, Any]:
        """Write the rows as a manifest in `temp_dir` (as NeMo does) and return the dataloader config."""
        manifest_path = os.path.join(temp_dir, "manifest.json")
        write_manifest(manifest_path, audio_files)
        return {
            "paths2audio_files": [row.audio_filepath for row in audio_files],
            "rows": audio_files,
            "manifest_filepath": manifest_path,
            "batch_size": diarcfg.batch_size,
            "temp_dir": temp_dir,
            "session_len_sec": diarcfg.session_len_sec,
            "num_workers": diarcfg.num_workers,
            "channel_selector": None,
        }

    def _setup_diarize_dataloader(self, config: dict[str, Any]) -> DataLoader:
        num_workers = int(config.get("num_workers") or 0)
        return DataLoader(
            DiarizationDataset(config["rows"]),
            batch_size=int(config["batch_size"]),
            shuffle=False,
            num_workers=num_workers,
            collate_fn=RecordingBatch.collate,
            persistent_workers=False,
        )

    @abstractmethod
    def _diarize_forward(self, batch: RecordingBatch) -> Sequence[Any]:
        """Neural part for a whole padded batch: one picklable `ForwardItem` per recording, in batch
        order (`pipeline.models.contract`)."""

    def _diarize_results(
        self, outputs: Sequence[Any], uniq_ids: List[str], diarcfg: DiarizeConfig
    ) -> List[RecordingResult]:
        """`_diarize_forward` items to one `RecordingResult` per item (turns, activity, speaker
        centroids). Models of this project implement it; a NeMo-style model that implements
        `_diarize_output_processing` instead gets its segments and tensors here, without embeddings."""
        if type(self)._diarize_output_processing is SpkDiarizationMixin._diarize_output_processing:
            raise NotImplementedError(
                f"{type(self).__name__} implements neither _diarize_results nor _diarize_output_processing"
            )
        return results_from_nemo(self._diarize_output_processing(outputs, uniq_ids, diarcfg), len(outputs))

    def _diarize_output_processing(
        self, outputs: Sequence[Any], uniq_ids: List[str], diarcfg: DiarizeConfig
    ) -> DiarizeOutput:
        """NeMo's hook: one list of `"begin end speaker_k"` strings per item, or a tuple with the
        per-frame tensors (`include_tensor_outputs`) and the speaker centroids (`return_embeddings`)."""
        return nemo_output(self._diarize_results(outputs, uniq_ids, diarcfg), diarcfg)

    def _diarize_on_end(self, diarcfg: DiarizeConfig) -> None:
        internal = diarcfg._internal
        if hasattr(self, "train"):
            self.train(internal.training_mode)
        featurizer = getattr(getattr(self, "preprocessor", None), "featurizer", None)
        if featurizer is not None:
            featurizer.dither, featurizer.pad_to = internal.dither_value, internal.pad_to_value
        if internal.logging_level is not None:
            logger.setLevel(internal.logging_level)

    @staticmethod
    def _write_arrays(arrays: Sequence[Union[np.ndarray, torch.Tensor]], temp_dir: str) -> List[str]:
        """In-memory 16 kHz mono signals become temporary WAV files (as NeMo's transcribe does)."""
        paths = []
        for index, array in enumerate(arrays):
            samples = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
            samples = samples.astype(np.float32).reshape(-1)
            path = os.path.join(temp_dir, f"audio_{index}.wav")
            sf.write(path, samples, SAMPLE_RATE, subtype="FLOAT")
            paths.append(path)
        return paths


def exclusive_result(result: RecordingResult, offset: float, frame_seconds: Optional[float]) -> RecordingResult:
    """`result` with one speaker at a time (`pipeline.postprocessing.exclusive_turns`); `offset`: where
    the recording's slice starts on its file's timeline (its activity frames start there)."""
    activity = result.activity[0].float().cpu().numpy() if result.activity is not None else None
    turns = exclusive_turns([parse_segment(s) for s in result.segments], activity, frame_seconds, offset)
    return dataclasses.replace(result, segments=turns_to_segments(turns))


def check_audio_exists(rows: Sequence[ManifestRow]) -> None:
    """A missing file is one error naming it, here, rather than a DataLoader worker's traceback."""
    from pipeline.io.storage import filesystem

    missing = []
    for row in rows:
        fs, path = filesystem(row.audio_filepath)
        if fs.isfile(path):
            continue
        if fs.isdir(path):
            raise IsADirectoryError(
                f"{row.audio_filepath} is a folder, not an audio file: pass its files, or a manifest of them "
                f"(python -m pipeline manifest '{row.audio_filepath}' --output manifest.jsonl)"
            )
        missing.append(row.audio_filepath)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise FileNotFoundError(f"audio file not found: {missing[0]}{more}")


def batch_ids(batch: Any) -> Optional[List[str]]:
    """The uniq_ids a batch carries (a `RecordingBatch`, or a user DataLoader's dict), else None."""
    if isinstance(batch, RecordingBatch):
        return batch.uniq_ids
    return batch.get("uniq_ids") if isinstance(batch, dict) else None


class DiarizationMixin(ABC):  # noqa: B024 - public NeMo-compatible mixin: kept an ABC like NeMo's
    """NeMo's legacy interface: `diarize(paths2audio_files, batch_size)` gives one list of segment
    strings per file. Here it delegates to `SpkDiarizationMixin.diarize` when the model has it."""

    def diarize(self, paths2audio_files: List[str], batch_size: int = 1) -> List[List[str]]:
        if not isinstance(self, SpkDiarizationMixin):
            raise NotImplementedError("a legacy diarization model must implement diarize()")
        return SpkDiarizationMixin.diarize(self, list(paths2audio_files), batch_size=batch_size, num_workers=0)
