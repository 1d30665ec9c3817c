"""The stages of the corpus plan, one per concern, each mapping the model's hooks to a Ray stage:
decode (CPU tasks) -> `_diarize_forward` (model actors) -> `_diarize_output_processing` (CPU tasks).

Rows carry `status`/`error` from the start: a stage that fails on one recording turns that row into
an error row and passes it on, so a bad file never costs its neighbours (Ray's `max_errored_blocks`
would drop the whole block) and every input row reaches the sink."""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import pickle
import re
import time
from typing import Any

import numpy as np
import torch

from pipeline.api import exclusive_result
from pipeline.config import DiarizeConfig
from pipeline.console import counted
from pipeline.corpus.progress import ForwardTally
from pipeline.corpus.status import DEFERRED, ERROR, OK
from pipeline.errors import ModelKeepsFailing, UsageError
from pipeline.io.audio import SAMPLE_RATE, decode_audio
from pipeline.io.storage import options_for
from pipeline.models.contract import ModelTraits, Recording, RecordingBatch, forward_progress
from pipeline.models.registry import load_model
from pipeline.speakers import pack_centroids

Batch = dict[str, np.ndarray]


def describe(error: BaseException) -> str:
    """A readable one-line reason: the message when it already names the problem, else its type too."""
    message = str(error).strip() or type(error).__name__
    if isinstance(error, (FileNotFoundError, ValueError)) and str(error):
        return message
    return f"{type(error).__name__}: {message}"


def decode_recording(row: dict[str, Any], storage_options: dict | None) -> dict[str, Any]:
    """CPU task: the row's audio slice as 16 kHz mono float32 (empty for error rows)."""
    started = time.perf_counter()
    audio = np.zeros(0, dtype=np.float32)
    if row["status"] == OK:
        duration = None if math.isnan(row["slice_duration"]) else float(row["slice_duration"])
        try:
            audio = decode_audio(
                row["audio_filepath"],
                float(row["offset"]),
                duration,
                options_for(row["audio_filepath"], storage_options),
            )
        except Exception as error:  # noqa: BLE001 - any failure is this row's error, not the run's
            row = {**row, "status": ERROR, "error": describe(error)}
    return {
        **row,
        "audio": audio,
        "audio_seconds": len(audio) / SAMPLE_RATE,
        "decode_seconds": time.perf_counter() - started,
    }


# A run stops once the model failed on every recording, the same way, for this many batches in a
# row and at least this many recordings (so that a few bad files in a row at batch size 1 do not).
STOP_AFTER_FAILED_BATCHES = 3
STOP_AFTER_FAILED_RECORDINGS = 8

logger = logging.getLogger("pipeline")


class DiarizeForward:
    """Model actor: builds the model once, then runs `_diarize_forward` on the decoded recordings of
    each batch; error rows pass through. Outputs are pickled per recording, so the plan does not
    depend on what a model's forward returns.

    When a batch fails: out of memory is retried in halves (down to one recording; later batches
    start at the size that worked), any other error one recording at a time to find the files that
    fail, which become error rows. A failure that takes every recording of the batch, the same way,
    is counted; after `STOP_AFTER_FAILED_BATCHES` such batches in a row the actor raises
    `ModelKeepsFailing` and the run stops."""

    def __init__(
        self,
        model_name: str,
        use_gpu: bool,
        threads: int | None = None,
        pool_size: int = 1,
        model_kwargs: dict[str, Any] | None = None,
        tally_key: str | None = None,
    ):
        if use_gpu and not torch.cuda.is_available():
            import ray

            raise UsageError(  # the user's fix: a CUDA node, or --gpus-per-actor 0
                "GPUs were requested for the model actors (--gpus-per-actor > 0) but CUDA is not usable "
                f"in this actor (Ray GPU ids {ray.get_gpu_ids()}, CUDA_VISIBLE_DEVICES="
                f"{os.environ.get('CUDA_VISIBLE_DEVICES')!r}, torch CUDA build {torch.version.cuda}); "
                "refusing to fall back to CPU"
            )
        # Ray sets OMP_NUM_THREADS from the CPU reservation (1 for 0.5 CPU). A CPU actor does the
        # heavy work of the run, so by default it gets the node's cores shared by the pool (on
        # 2 cores, 2 threads: 59 against 44 audio seconds per second, docs/RESULTS.md).
        if not use_gpu:
            torch.set_num_threads(threads or max(1, (os.cpu_count() or 1) // pool_size))
        self.device = torch.device("cuda" if use_gpu else "cpu")
        self.model = load_model(model_name, device=self.device, **(model_kwargs or {}))
        self.forward_size = math.inf  # lowered after an out-of-memory error
        self.failed_batches = 0
        self.failed_recordings = 0
        self.last_failure = ""
        self.tally = ForwardTally(tally_key)  # what the progress line counts before a commit

    def __call__(self, batch: Batch) -> Batch:
        count = len(batch["uniq_id"])
        self.tally.handed(count, float(np.sum(batch["audio_seconds"])))  # the decode stage's, 0 for error rows
        status, error = batch["status"].copy().astype(object), batch["error"].astype(object)
        outputs = np.array([b""] * count, dtype=object)
        seconds = np.zeros(count, dtype=np.float64)
        ready = [i for i in range(count) if status[i] == OK]
        failures = self._forward_in_chunks(batch, ready, outputs, seconds)
        for i, reason in failures.items():
            status[i], error[i] = ERROR, f"model forward failed: {reason}"
        if ready and len(failures) == len(ready) and len({failure_kind(r) for r in failures.values()}) == 1:
            self._count_failed_batch(len(ready), error[ready[0]])
            for i in ready:
                status[i] = DEFERRED
        elif ready:
            self.failed_batches = self.failed_recordings = 0
        self.tally.publish()
        rest = {key: value for key, value in batch.items() if key != "audio"}
        return {
            **rest,
            "status": status.astype(str),
            "error": error,
            "model_output": outputs,
            "forward_seconds": seconds,
        }

    def _count_failed_batch(self, recordings: int, reason: str) -> None:
        if self.failed_batches and failure_kind(reason) != failure_kind(self.last_failure):
            self.failed_batches = self.failed_recordings = 0
        self.failed_batches += 1
        self.failed_recordings += recordings
        self.last_failure = reason
        if self.failed_batches >= STOP_AFTER_FAILED_BATCHES and self.failed_recordings >= STOP_AFTER_FAILED_RECORDINGS:
            raise ModelKeepsFailing(
                f"the model failed on every recording of {self.failed_batches} batches in a row "
                f"({self.failed_recordings} recordings), always with: {reason}; stopping the run "
                "(fix the model, then rerun with --resume)"
            )

    def _forward_in_chunks(
        self, batch: Batch, rows: list[int], outputs: np.ndarray, seconds: np.ndarray
    ) -> dict[int, str]:
        """Forward of `rows` in chunks of at most `forward_size`; returns the reasons of the rows that failed."""
        size = len(rows) if math.isinf(self.forward_size) else int(self.forward_size)
        failures: dict[int, str] = {}
        for start in range(0, len(rows), max(1, size)):
            failures.update(self._forward_or_split(batch, rows[start : start + size], outputs, seconds))
        return failures

    def _forward_or_split(
        self, batch: Batch, rows: list[int], outputs: np.ndarray, seconds: np.ndarray
    ) -> dict[int, str]:
        if not rows:
            return {}
        try:
            self._forward(batch, rows, outputs, seconds)
            return {}
        except Exception as failure:  # noqa: BLE001 - narrowed down below, never lost
            if is_out_of_memory(failure):
                release_cached_memory()
                if len(rows) == 1:
                    return {rows[0]: f"out of memory even alone: {describe(failure)}"}
                half = (len(rows) + 1) // 2
                if half < self.forward_size:
                    logger.warning(
                        "out of memory at a forward batch of %d recordings; retrying in batches of %d", len(rows), half
                    )
                    self.forward_size = half
                return {
                    **self._forward_in_chunks(batch, rows[:half], outputs, seconds),
                    **self._forward_in_chunks(batch, rows[half:], outputs, seconds),
                }
            if len(rows) == 1:
                return {rows[0]: describe(failure)}
            failures: dict[int, str] = {}
            for i in rows:  # one by one, to find the recordings that fail
                failures.update(self._forward_or_split(batch, [i], outputs, seconds))
            return failures

    @torch.inference_mode()
    def _forward(self, batch: Batch, rows: list[int], outputs: np.ndarray, seconds: np.ndarray) -> None:
        """Forward of `rows` as one padded batch; the time is shared out by audio length."""
        recordings = [
            Recording(
                batch["uniq_id"][i],
                np.asarray(batch["audio"][i], dtype=np.float32),
                float(batch["offset"][i]),
                int(batch["num_speakers"][i]),
            )
            for i in rows
        ]
        lengths = np.array([len(recording.audio) for recording in recordings], dtype=np.float64)
        audio_seconds = lengths.sum() / SAMPLE_RATE
        started = time.perf_counter()
        with forward_progress(lambda done: self.tally.forwarding(audio_seconds, done)):
            results = list(self.model._diarize_forward(RecordingBatch.collate(recordings).to(self.device)))
        elapsed = time.perf_counter() - started
        self.tally.forward_finished(audio_seconds)
        if len(results) != len(rows):
            raise RuntimeError(
                f"_diarize_forward returned {counted(len(results), 'item')} for a batch of "
                f"{counted(len(rows), 'recording')} "
                "(one per recording is the contract)"
            )
        shares = lengths / lengths.sum() if lengths.sum() else np.full(len(rows), 1 / len(rows))
        for i, result, share in zip(rows, results, shares):
            outputs[i] = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
            seconds[i] = elapsed * share


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, (torch.OutOfMemoryError, MemoryError)) or "out of memory" in str(error).lower()


def release_cached_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def failure_kind(reason: str) -> str:
    """A reason without its numbers (`Tried to allocate 1.20 GiB` varies by recording)."""
    return re.sub(r"\d+(\.\d+)?", "N", reason)


@functools.lru_cache(maxsize=4)
def cpu_model(model_name: str, model_kwargs_json: str = "{}"):
    """One CPU copy of the model per worker process, for its post-processing hook."""
    return load_model(model_name, device="cpu", **json.loads(model_kwargs_json))


def postprocess_batch(
    batch: Batch, model_name: str, config: DiarizeConfig, model_kwargs: dict[str, Any] | None = None
) -> Batch:
    """CPU task: the model's output processing (`_diarize_results`) per recording, segments as
    newline-joined NeMo strings (`"begin end speaker_k"`); keeps clustering off the model actors.
    The speaker centroids it returns travel to the sink packed (`pipeline.speakers.pack_centroids`;
    empty bytes when the model gives none), for `speakers/`."""
    model = cpu_model(model_name, json.dumps(model_kwargs or {}, sort_keys=True))
    count = len(batch["uniq_id"])
    status, error = batch["status"].copy(), batch["error"].astype(object)
    segments = np.array([""] * count, dtype=object)
    centroids = np.array([b""] * count, dtype=object)
    seconds = np.zeros(count, dtype=np.float64)
    for i in range(count):
        if status[i] != OK:
            continue
        started = time.perf_counter()
        try:
            output = pickle.loads(batch["model_output"][i])
            (result,) = model._diarize_results([output], [batch["uniq_id"][i]], config)
            if config.exclusive and not ModelTraits.of(model).exclusive_output:
                result = exclusive_result(result, float(output.offset), ModelTraits.of(model).frame_seconds)
            segments[i] = "\n".join(result.segments)
            named = {segment.split()[2] for segment in result.segments}
            recording_centroids = {name: value for name, value in result.speaker_embeddings.items() if name in named}
            centroids[i] = pack_centroids(recording_centroids) if recording_centroids else b""
        except Exception as failure:  # noqa: BLE001
            status[i], error[i] = ERROR, f"post-processing failed: {describe(failure)}"
        seconds[i] = time.perf_counter() - started
    rest = {key: value for key, value in batch.items() if key != "model_output"}
    return {
        **rest,
        "status": status,
        "error": error,
        "segments": segments,
        "speaker_centroids": centroids,
        "post_seconds": seconds,
    }
