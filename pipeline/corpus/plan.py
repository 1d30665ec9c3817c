"""`run_corpus`: the whole Ray Data plan of a corpus run, readable top to bottom.

    manifest lines (driver)  ->  decode (CPU tasks)  ->  _diarize_forward (model actor pool)
    ->  _diarize_output_processing (CPU tasks)  ->  RTTM + Parquet sink  ->  manifest.jsonl, summary.json

CPU reservations are what keep a small machine from stalling: a model actor reserves `actor_cpus`
(0.5 by default, GPU actors too, where Ray would otherwise reserve a whole CPU), so that with the
default single actor on a 2-CPU node there is always a CPU left for decode, post-processing and
write tasks, and the actor pool can never hold every CPU while its input waits for one."""

from __future__ import annotations

import math
import os
import platform
import time
from typing import Any, Iterable, Sequence

import ray

from ..config import DiarizeConfig, load_postprocessing_from_yaml
from ..console import announce_dashboard, quiet_ray, ray_init_options
from .inputs import InputRow, read_input_rows
from .outputs import OutputLayout
from .progress import CommitProgress
from .sinks import CorpusSink
from .stages import DiarizeForward, decode_recording, postprocess_batch
from .storage import public_options

ActorCount = int | str | Sequence[int]


def run_corpus(
    manifests: str | Iterable[str],
    output: str,
    model: str = "default",
    batch_size: int = 4,
    num_actors: ActorCount = 1,
    gpus_per_actor: float = 0.0,
    resume: bool = False,
    storage_options: dict[str, Any] | None = None,
    max_num_speakers: int = 8,
    postprocessing_yaml: str | None = None,
    address: str | None = None,
    actor_cpus: float = 0.5,
    actor_threads: int | None = None,
    task_cpus: float = 1.0,
    limit: int | None = None,
) -> dict[str, Any]:
    """Diarize every row of `manifests` (URIs or globs) into `output`; returns the run summary
    (also written to `output/summary.json`). Rows that fail become error rows, never a failed run.
    `num_actors` is a pool size or `(min, max)` / `"min,max"` for an autoscaling pool. `limit`: only
    the first `limit` input rows (a trial run; a later run with a larger or no limit resumes it).
    Progress (recordings, hours, errors, ETA) is shown as `pipeline.console.CONSOLE` says."""
    started = time.perf_counter()
    manifests = [manifests] if isinstance(manifests, str) else list(manifests)
    layout = OutputLayout(output, storage_options)
    completed = layout.prepare(resume)
    inputs = read_input_rows(manifests, storage_options)
    if limit is not None:
        inputs = inputs[:limit]
    todo = [row.to_item() for row in inputs if row.resume_key not in completed]
    config = DiarizeConfig(
        batch_size=batch_size,
        max_num_speakers=max_num_speakers,
        postprocessing_yaml=postprocessing_yaml,
        postprocessing_params=load_postprocessing_from_yaml(postprocessing_yaml),
        verbose=False,
    )
    min_actors, max_actors = actor_pool_size(num_actors)

    if todo:
        connect_ray(address)
        recordings = ray.data.from_items(todo, override_num_blocks=math.ceil(len(todo) / batch_size))
        decoded = recordings.map(decode_recording, fn_kwargs={"storage_options": storage_options}, num_cpus=task_cpus)
        forwarded = decoded.map_batches(
            DiarizeForward,
            fn_constructor_kwargs={"model_name": model, "use_gpu": gpus_per_actor > 0, "threads": actor_threads,
                                   "pool_size": max_actors},
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(min_size=min_actors, max_size=max_actors),
            num_cpus=actor_cpus,
            num_gpus=gpus_per_actor or None,
        )
        labelled = forwarded.map_batches(
            postprocess_batch,
            fn_kwargs={"model_name": model, "config": config},
            batch_size=batch_size,
            batch_format="numpy",
            num_cpus=task_cpus,
        )
        with CommitProgress(layout, total=len(inputs), already_done=len(inputs) - len(todo)):
            labelled.write_datasink(CorpusSink(layout, model))

    recorded = layout.read_table("recordings")
    ok_ids = {uid for uid, status in zip(recorded["uniq_id"].to_pylist(), recorded["status"].to_pylist()) if status == "ok"}
    write_output_manifest(layout, inputs, ok_ids)
    summary = run_summary(
        inputs, recorded, {item["uniq_id"] for item in todo if item["uniq_id"]}, time.perf_counter() - started,
        config={
            "manifests": manifests, "output": output, "model": model, "batch_size": batch_size,
            "num_actors": [min_actors, max_actors], "gpus_per_actor": gpus_per_actor, "actor_cpus": actor_cpus, "actor_threads": actor_threads,
            "task_cpus": task_cpus, "resume": resume, "max_num_speakers": max_num_speakers,
            "postprocessing_yaml": postprocessing_yaml, "storage_options": public_options(storage_options), "limit": limit,
        },
    )
    summary.update(processed_this_run=len(todo), skipped_by_resume=len(inputs) - len(todo))
    layout.write_atomically(layout.path("summary.json"), (json_text(summary) + "\n").encode("utf-8"))
    return summary


def actor_pool_size(num_actors: ActorCount) -> tuple[int, int]:
    """`4` -> (4, 4); `"1,4"` or `(1, 4)` -> (1, 4)."""
    if isinstance(num_actors, str):
        parts = [int(part) for part in num_actors.split(",")]
    else:
        parts = [num_actors] if isinstance(num_actors, int) else list(num_actors)
    low, high = parts[0], parts[-1]
    if len(parts) > 2 or not 1 <= low <= high:
        raise ValueError(f"num_actors must be N >= 1 or MIN,MAX with 1 <= MIN <= MAX, got {num_actors}")
    return int(low), int(high)


def connect_ray(address: str | None) -> None:
    """Join `address` or `RAY_ADDRESS` when given, else start a Ray local to this process; Ray's own
    logs stay out of the console (`pipeline.console`) and the dashboard address is shown once."""
    if not ray.is_initialized():
        context = ray.init(address=address or os.environ.get("RAY_ADDRESS") or "local", **ray_init_options())
        announce_dashboard(getattr(context, "dashboard_url", None))
    else:
        from ray._private.worker import get_dashboard_url

        try:
            announce_dashboard(get_dashboard_url())
        except Exception:  # noqa: BLE001 - a client connection has no dashboard address to give
            pass
    quiet_ray()


def write_output_manifest(layout: OutputLayout, inputs: list[InputRow], ok_ids: set[str]) -> None:
    """The ok input rows, in input order, with `rttm_filepath` at the written RTTM (the reference
    RTTM the row named, if any, moves to `reference_rttm_filepath`)."""
    lines = []
    for item in inputs:
        if item.uniq_id not in ok_ids:
            continue
        record = item.row.to_json()
        if record.get("rttm_filepath"):
            record["reference_rttm_filepath"] = record["rttm_filepath"]
        record["rttm_filepath"] = layout.rttm_uri(item.uniq_id)
        lines.append(json_text(record, indent=None))
    layout.write_atomically(layout.path("manifest.jsonl"), "".join(line + "\n" for line in lines).encode("utf-8"))


def run_summary(inputs: list[InputRow], recorded, processed_ids: set[str], wall_seconds: float, config: dict) -> dict[str, Any]:
    rows = recorded.to_pylist()
    ok = [row for row in rows if row["status"] == "ok"]
    audio_this_run = sum(row["duration"] for row in ok if row["uniq_id"] in processed_ids)
    return {
        "input_rows": len(inputs),
        "recorded_rows": len(rows),
        "ok": len(ok),
        "errors": len(rows) - len(ok),
        "audio_hours": sum(row["duration"] for row in ok) / 3600,
        "speech_hours": sum(row["speech_seconds"] for row in ok) / 3600,
        "wall_seconds": wall_seconds,
        "audio_seconds_per_wall_second": audio_this_run / wall_seconds if wall_seconds else 0.0,
        "config": config,
        "versions": versions(),
    }


def versions() -> dict[str, str]:
    import pyarrow
    import torch

    from importlib.metadata import PackageNotFoundError, version

    try:
        package = version("corpus-diarization")
    except PackageNotFoundError:
        package = "unknown"
    return {"corpus-diarization": package, "python": platform.python_version(), "ray": ray.__version__,
            "torch": torch.__version__, "pyarrow": pyarrow.__version__}


def json_text(value: Any, indent: int | None = 2) -> str:
    import json

    return json.dumps(value, indent=indent, ensure_ascii=False)
