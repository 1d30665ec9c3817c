"""The stages of the corpus plan, one per concern, each mapping the model's hooks to a Ray stage:
decode (CPU tasks) -> `_diarize_forward` (model actors) -> `_diarize_output_processing` (CPU tasks).

Rows carry `status`/`error` from the start: a stage that fails on one recording turns that row into
an error row and passes it on, so a bad file never costs its neighbours (Ray's `max_errored_blocks`
would drop the whole block) and every input row reaches the sink."""

from __future__ import annotations

import functools
import math
import os
import pickle
import time
from typing import Any

import numpy as np
import torch

from ..audio import SAMPLE_RATE, decode_audio
from ..config import DiarizeConfig
from ..dataset import collate_recordings, move_to_device, recording_item
from ..errors import UsageError
from ..models import load_model
from .storage import options_for

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
    if row["status"] == "ok":
        duration = None if math.isnan(row["slice_duration"]) else float(row["slice_duration"])
        try:
            audio = decode_audio(row["audio_filepath"], float(row["offset"]), duration, options_for(row["audio_filepath"], storage_options))
        except Exception as error:  # noqa: BLE001 - any failure is this row's error, not the run's
            row = {**row, "status": "error", "error": describe(error)}
    return {**row, "audio": audio, "audio_seconds": len(audio) / SAMPLE_RATE, "decode_seconds": time.perf_counter() - started}


class DiarizeForward:
    """Model actor: builds the model once, then runs `_diarize_forward` on the decoded recordings of
    each batch; error rows pass through. Outputs are pickled per recording, so the plan does not
    depend on what a model's forward returns."""

    def __init__(self, model_name: str, use_gpu: bool, threads: int | None = None, pool_size: int = 1):
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
        # 2 cores, 2 threads: 59 against 44 audio seconds per second, BENCHMARKS.md).
        if not use_gpu:
            torch.set_num_threads(threads or max(1, (os.cpu_count() or 1) // pool_size))
        self.device = torch.device("cuda" if use_gpu else "cpu")
        self.model = load_model(model_name, device=self.device)

    def __call__(self, batch: Batch) -> Batch:
        count = len(batch["uniq_id"])
        status, error = batch["status"].copy(), batch["error"].astype(object)
        outputs = np.array([b""] * count, dtype=object)
        seconds = np.zeros(count, dtype=np.float64)
        ready = [i for i in range(count) if status[i] == "ok"]
        try:
            self._forward(batch, ready, outputs, seconds)
        except Exception:  # noqa: BLE001 - retry one by one to find the recordings that fail
            for i in ready:
                try:
                    self._forward(batch, [i], outputs, seconds)
                except Exception as failure:  # noqa: BLE001
                    status[i], error[i] = "error", f"model forward failed: {describe(failure)}"
        rest = {key: value for key, value in batch.items() if key != "audio"}
        return {**rest, "status": status, "error": error, "model_output": outputs, "forward_seconds": seconds}

    @torch.inference_mode()
    def _forward(self, batch: Batch, rows: list[int], outputs: np.ndarray, seconds: np.ndarray) -> None:
        """Forward of `rows` as one padded batch; the time is shared out by audio length."""
        if not rows:
            return
        items = [
            recording_item(batch["uniq_id"][i], np.array(batch["audio"][i], dtype=np.float32), batch["offset"][i], int(batch["num_speakers"][i]))
            for i in rows
        ]
        started = time.perf_counter()
        results = self.model._diarize_forward(move_to_device(collate_recordings(items), self.device))
        elapsed = time.perf_counter() - started
        lengths = np.array([len(item["audio"]) for item in items], dtype=np.float64)
        shares = lengths / lengths.sum() if lengths.sum() else np.full(len(rows), 1 / len(rows))
        for i, result, share in zip(rows, results, shares):
            outputs[i] = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
            seconds[i] = elapsed * share


@functools.lru_cache(maxsize=4)
def cpu_model(model_name: str):
    """One CPU copy of the model per worker process, for its post-processing hook."""
    return load_model(model_name, device="cpu")


def postprocess_batch(batch: Batch, model_name: str, config: DiarizeConfig) -> Batch:
    """CPU task: `_diarize_output_processing` per recording, segments as newline-joined NeMo strings
    (`"begin end speaker_k"`); keeps clustering off the model actors."""
    model = cpu_model(model_name)
    count = len(batch["uniq_id"])
    status, error = batch["status"].copy(), batch["error"].astype(object)
    segments = np.array([""] * count, dtype=object)
    seconds = np.zeros(count, dtype=np.float64)
    for i in range(count):
        if status[i] != "ok":
            continue
        started = time.perf_counter()
        try:
            output = pickle.loads(batch["model_output"][i])
            (recording_segments,) = model._diarize_output_processing([output], [batch["uniq_id"][i]], config)
            segments[i] = "\n".join(recording_segments)
        except Exception as failure:  # noqa: BLE001
            status[i], error[i] = "error", f"post-processing failed: {describe(failure)}"
        seconds[i] = time.perf_counter() - started
    rest = {key: value for key, value in batch.items() if key != "model_output"}
    return {**rest, "status": status, "error": error, "segments": segments, "post_seconds": seconds}
