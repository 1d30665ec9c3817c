"""`run_corpus`: the whole Ray Data plan of a corpus run, readable top to bottom.

    manifest lines (driver)  ->  decode (CPU tasks)  ->  _diarize_forward (model actor pool)
    ->  _diarize_output_processing (CPU tasks)  ->  RTTM + Parquet sink  ->  manifest.jsonl, summary.json

CPU reservations are what keep a small machine from stalling: a model actor reserves `actor_cpus`
(0.5 by default, GPU actors too, where Ray would otherwise reserve a whole CPU), so that with the
default single actor on a 2-CPU node there is always a CPU left for decode, post-processing and
write tasks, and the actor pool can never hold every CPU while its input waits for one."""

from __future__ import annotations

import errno
import math
import os
import platform
import re
import time
from collections import Counter
from typing import Any, Iterable

import ray

from ..config import DiarizeConfig, load_postprocessing_from_yaml
from . import preflight
from .inputs import InputRow, read_input_rows
from .lease import OutputInUse, OutputLease
from .outputs import OutputLayout, OutputWriteFailed
from .preflight import ActorCount
from .ray_session import connect_ray, exit_on_sigterm
from .sinks import CorpusSink
from .stages import DiarizeForward, ModelKeepsFailing, decode_recording, postprocess_batch
from .storage import public_options

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
    model_kwargs: dict[str, Any] | None = None,
    checkpoint: str | None = None,
) -> dict[str, Any]:
    """Diarize every row of `manifests` (URIs or globs) into `output`; returns the run summary
    (also written to `output/summary.json`). Rows that fail become error rows, never a failed run.
    `num_actors` is a pool size or `(min, max)` / `"min,max"` for an autoscaling pool. `model` is a
    registered name, `package.module:factory` or an installed plug-in (`pipeline.models`), built
    with `model_kwargs` and, when given, `checkpoint=` (a path or URI) in every worker.

    Before any work (`preflight.py`): the options, the model, a lease on `output` (one run per
    output; `resume` takes over the lease of a run that is gone) and the resources the actors ask
    for; each failure is one `UsageError` line."""
    started = time.perf_counter()
    manifests = [manifests] if isinstance(manifests, str) else list(manifests)
    min_actors, max_actors = preflight.check_options(batch_size, max_num_speakers, num_actors, gpus_per_actor,
                                                     actor_cpus, actor_threads, task_cpus)
    model_kwargs = {**(model_kwargs or {}), **({"checkpoint": checkpoint} if checkpoint else {})}
    preflight.check_model(model, model_kwargs)
    config = DiarizeConfig(
        batch_size=batch_size,
        max_num_speakers=max_num_speakers,
        postprocessing_yaml=postprocessing_yaml,
        postprocessing_params=load_postprocessing_from_yaml(postprocessing_yaml),
        verbose=False,
    )
    exit_on_sigterm()
    with OutputLease(output, storage_options).acquire(resume) as lease:
        try:
            layout = OutputLayout(output, storage_options)
            completed = layout.prepare(resume)
            connect_ray(address)
            preflight.check_resources(gpus_per_actor, actor_cpus, min_actors)
            inputs = read_input_rows(manifests, storage_options)
            todo = [row.to_item() for row in inputs if row.resume_key not in completed]
            if todo:
                recordings = ray.data.from_items(todo, override_num_blocks=math.ceil(len(todo) / batch_size))
                # A stage's exception reaches the driver as itself (so `run_failure` can name it),
                # not as a `UserCodeException` that keeps the cause only as text.
                recordings.context.raise_original_map_exception = True
                decoded = recordings.map(decode_recording, fn_kwargs={"storage_options": storage_options}, num_cpus=task_cpus)
                forwarded = decoded.map_batches(
                    DiarizeForward,
                    fn_constructor_kwargs={"model_name": model, "use_gpu": gpus_per_actor > 0, "threads": actor_threads,
                                           "pool_size": max_actors, "model_kwargs": model_kwargs},
                    batch_size=batch_size,
                    batch_format="numpy",
                    compute=ray.data.ActorPoolStrategy(min_size=min_actors, max_size=max_actors),
                    num_cpus=actor_cpus,
                    num_gpus=gpus_per_actor or None,
                )
                labelled = forwarded.map_batches(
                    postprocess_batch,
                    fn_kwargs={"model_name": model, "config": config, "model_kwargs": model_kwargs},
                    batch_size=batch_size,
                    batch_format="numpy",
                    num_cpus=task_cpus,
                )
                labelled.write_datasink(CorpusSink(layout, model))

            if lease.lost_to is not None:
                raise OutputInUse(f"another run took over the lease on {output} while this one worked "
                                  f"(host {lease.lost_to.get('host')}, pid {lease.lost_to.get('pid')}); check that run's outputs")
            recorded = layout.read_table("recordings")
            ok_ids = {uid for uid, status in zip(recorded["uniq_id"].to_pylist(), recorded["status"].to_pylist()) if status == "ok"}
            write_output_manifest(layout, inputs, ok_ids)
            summary = run_summary(
                inputs, recorded, {item["uniq_id"] for item in todo if item["uniq_id"]}, time.perf_counter() - started,
                config={
                    "manifests": manifests, "output": output, "model": model, "model_kwargs": model_kwargs, "batch_size": batch_size,
                    "num_actors": [min_actors, max_actors], "gpus_per_actor": gpus_per_actor, "actor_cpus": actor_cpus, "actor_threads": actor_threads,
                    "task_cpus": task_cpus, "resume": resume, "max_num_speakers": max_num_speakers,
                    "postprocessing_yaml": postprocessing_yaml, "storage_options": public_options(storage_options),
                },
            )
            summary.update(processed_this_run=len(todo), skipped_by_resume=len(inputs) - len(todo))
            layout.write_atomically(layout.path("summary.json"), (json_text(summary) + "\n").encode("utf-8"))
        except Exception as error:
            failure = run_failure(error, output)
            if failure is error:
                raise
            raise failure from error
    return summary


def run_failure(error: Exception, output: str) -> Exception:
    """The one-line error a failed run ends with, when its cause is known: a model that keeps
    failing, or an output that cannot take more (disk full, quota, read-only); else `error` itself.
    Ray wraps a stage's exception (`RayTaskError`, `UserCodeException`), so the chain is searched."""
    for cause in causes(error):
        if isinstance(cause, ray.exceptions.RayTaskError):
            continue  # Ray's wrapper (an instance of its cause's class too): its `cause` comes next
        if isinstance(cause, ModelKeepsFailing):
            return ModelKeepsFailing(str(cause).splitlines()[0])  # Ray Data appends its retry notes
        if isinstance(cause, OSError) and cause.errno in OUTPUT_FULL_ERRNOS:
            where = f" ({str(cause.filename).splitlines()[0]})" if cause.filename else ""  # Ray Data appends notes to the last arg
            return OutputWriteFailed(
                f"cannot write to {output}{where}: {os.strerror(cause.errno)}; what was committed is kept: "
                "free space (or fix the output), then rerun with --resume"
            )
    return error


OUTPUT_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


def causes(error: BaseException):
    """`error` and everything it wraps or was raised from (depth-first, each once)."""
    seen: set[int] = set()
    stack = [error]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack.extend([getattr(current, "cause", None), current.__cause__, current.__context__])


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
        "errors_by_reason": dict(Counter(error_reason(row) for row in rows if row["status"] != "ok").most_common()),
        "audio_hours": sum(row["duration"] for row in ok) / 3600,
        "speech_hours": sum(row["speech_seconds"] for row in ok) / 3600,
        "wall_seconds": wall_seconds,
        "audio_seconds_per_wall_second": audio_this_run / wall_seconds if wall_seconds else 0.0,
        "config": config,
        "versions": versions(),
    }


def error_reason(row: dict[str, Any]) -> str:
    """An error row's reason without what is particular to the row (its manifest and line, its file,
    numbers), so that rows failing the same way count together in `errors_by_reason`."""
    text = row["error"] or "unknown"
    location = f"{row['manifest']}:{row['line_number']}: "
    if text.startswith(location):
        text = text[len(location):]
    path = row.get("audio_filepath") or ""
    for name in sorted({path, os.path.basename(path)} - {""}, key=len, reverse=True):
        text = text.replace(name, "<file>")
    return re.sub(r"\d+(\.\d+)?", "N", text)[:160]


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
