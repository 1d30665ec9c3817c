"""`run_corpus`: the whole Ray Data plan of a corpus run, readable top to bottom.

    manifest lines (Ray read tasks: parse, validate)  ->  ids + resume filter (`inputs.assign_ids`)
    ->  error rows straight to the sink
    ->  ok rows: decode (CPU tasks)  ->  _diarize_forward (model actor pool)
        ->  _diarize_output_processing (CPU tasks)  ->  RTTM + Parquet sink
    ->  manifest.jsonl, summary.json (streamed from `recordings`)

The driver holds no per-row state: manifests are read, ids assigned and the output manifest sorted
by Ray, and the summary is a streaming aggregate of `recordings`. Rows that are already errors (bad
lines) never reach decode or the model, and are committed first, in large blocks. Ok rows travel in
blocks sized by work (about `TARGET_BLOCK_AUDIO_SECONDS` of audio when the rows give durations), each
block committed by the sink as soon as it is done, so a kill loses at most the blocks in flight.

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

import pyarrow as pa
from ray.data.expressions import col
import ray

from ..config import DiarizeConfig, load_postprocessing_from_yaml
from .inputs import assign_ids, manifest_row, read_inputs
from .outputs import OutputLayout
from .sinks import CorpusSink
from .storage import public_options

ActorCount = int | str | Sequence[int]

TARGET_BLOCK_AUDIO_SECONDS = 600.0  # about one commit per 10 minutes of audio, per block in flight
MAX_BATCHES_PER_BLOCK = 32
MIN_BLOCKS = 16  # a small corpus still spreads over tasks and commits as it goes
RECORDED_COLUMNS = ["uniq_id", "manifest", "line_number", "row_key", "manifest_row"]


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
    dry_run: bool = False,
    check_audio: bool = False,
) -> dict[str, Any]:
    """Diarize every row of `manifests` (URIs or globs) into `output`; returns the run summary
    (also written to `output/summary.json`). Rows that fail become error rows, never a failed run.
    `num_actors` is a pool size or `(min, max)` / `"min,max"` for an autoscaling pool.

    `dry_run=True` reads and checks every row (fields, ids, that the audio exists, its duration with
    `check_audio`) and returns a report (`dry_run.dry_run_report`) without writing anything."""
    started = time.perf_counter()
    manifests = [manifests] if isinstance(manifests, str) else list(manifests)
    layout = OutputLayout(output, storage_options)
    has_records = layout.check_fresh(resume) if dry_run else layout.prepare(resume)
    config = DiarizeConfig(
        batch_size=batch_size,
        max_num_speakers=max_num_speakers,
        postprocessing_yaml=postprocessing_yaml,
        postprocessing_params=load_postprocessing_from_yaml(postprocessing_yaml),
        verbose=False,
    )
    min_actors, max_actors = actor_pool_size(num_actors)

    connect_ray(address)
    parsed = read_inputs(manifests, storage_options).materialize()
    input_rows = parsed.count()
    recorded = layout.recorded(RECORDED_COLUMNS) if has_records else None
    todo = assign_ids(parsed, input_rows, recorded).materialize()
    if dry_run:
        from .dry_run import dry_run_report

        return dry_run_report(todo, input_rows, storage_options, check_audio, task_cpus)

    counts = row_counts(todo)
    parts_before = layout.part_tokens("recordings")
    sink = CorpusSink(layout, model)
    if counts["error"]:
        todo.filter(expr=col("status") == "error").write_datasink(sink)
    if counts["ok"]:
        from .stages import DiarizeForward, decode_recording, postprocess_batch

        rows_per_block = block_rows(batch_size, counts["ok"], counts["ok_known_seconds"], counts["ok_known_rows"])
        recordings = todo.filter(expr=col("status") == "ok").repartition(math.ceil(counts["ok"] / rows_per_block))
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
        labelled.write_datasink(sink)

    write_output_manifest(layout)
    summary = run_summary(
        layout, input_rows, parts_before, time.perf_counter() - started,
        config={
            "manifests": manifests, "output": output, "model": model, "batch_size": batch_size,
            "num_actors": [min_actors, max_actors], "gpus_per_actor": gpus_per_actor, "actor_cpus": actor_cpus, "actor_threads": actor_threads,
            "task_cpus": task_cpus, "resume": resume, "max_num_speakers": max_num_speakers,
            "postprocessing_yaml": postprocessing_yaml, "storage_options": public_options(storage_options),
        },
    )
    summary.update(processed_this_run=counts["ok"] + counts["error"], skipped_by_resume=input_rows - counts["ok"] - counts["error"])
    layout.write_atomically(layout.path("summary.json"), (json_text(summary) + "\n").encode("utf-8"))
    return summary


def row_counts(todo) -> dict[str, float]:
    """Ok and error rows still to do, and the seconds of the ok rows that give a duration: one small
    row per block comes back to the driver."""

    def count(batch: pa.Table) -> pa.Table:
        import pyarrow.compute as pc

        ok = pc.equal(batch["status"], "ok")
        known = pc.and_(ok, pc.invert(pc.is_nan(batch["slice_duration"])))
        return pa.table({
            "ok": [pc.sum(ok.cast(pa.int64())).as_py() or 0],
            "error": [batch.num_rows - (pc.sum(ok.cast(pa.int64())).as_py() or 0)],
            "ok_known_rows": [pc.sum(known.cast(pa.int64())).as_py() or 0],
            "ok_known_seconds": [pc.sum(pc.if_else(known, batch["slice_duration"], 0.0)).as_py() or 0.0],
        })

    totals = {"ok": 0, "error": 0, "ok_known_rows": 0, "ok_known_seconds": 0.0}
    for row in todo.map_batches(count, batch_format="pyarrow", batch_size=None).iter_rows():
        for key in totals:
            totals[key] += row[key]
    return totals


def block_rows(batch_size: int, rows: int, known_seconds: float, known_rows: int) -> int:
    """Rows per block of the ok rows: whole model batches holding about `TARGET_BLOCK_AUDIO_SECONDS`
    of audio when the rows say how long they are (short slices travel many batches to a block, so
    per-block overhead does not dominate), one batch when they do not; and never so many that the
    corpus makes fewer than `MIN_BLOCKS` blocks."""
    if not known_rows or not known_seconds:
        return batch_size
    batches = TARGET_BLOCK_AUDIO_SECONDS / (batch_size * known_seconds / known_rows)
    spread = math.ceil(rows / MIN_BLOCKS / batch_size)
    return batch_size * max(1, min(MAX_BATCHES_PER_BLOCK, int(batches), spread))


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
    """Join `address` or `RAY_ADDRESS` when given, else start a Ray local to this process."""
    if not ray.is_initialized():
        ray.init(address=address or os.environ.get("RAY_ADDRESS") or "local")


def write_output_manifest(layout: OutputLayout) -> None:
    """The ok rows of `recordings`, sorted by manifest and line, with `rttm_filepath` at the written
    RTTM (the reference RTTM the row named, if any, moves to `reference_rttm_filepath`). Ray sorts
    the rows and writes one part per sorted block; the driver only concatenates the parts' bytes in
    order (it never holds rows, nor maps them from the object store)."""
    import shutil

    parts_folder = layout.path(MANIFEST_PARTS)
    if layout.fs.exists(parts_folder):
        layout.fs.rm(parts_folder, recursive=True)
    recorded = layout.recorded(["uniq_id", "manifest", "line_number", "status", "manifest_row"])
    parts = []
    if recorded is not None:
        ok = recorded.filter(expr=col("status") == "ok").sort(["manifest", "line_number"])
        parts = ok.map_batches(write_manifest_part, fn_kwargs={"layout": layout}, batch_size=None,
                               batch_format="pyarrow").take_all()
    with layout.open_atomically(layout.path("manifest.jsonl")) as out:
        for part in sorted(parts, key=lambda p: (p["manifest"], p["line_number"])):
            with layout.fs.open(part["path"], "rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)
    if parts:
        layout.fs.rm(parts_folder, recursive=True)


MANIFEST_PARTS = ".manifest-parts"


def write_manifest_part(block: pa.Table, layout: OutputLayout) -> pa.Table:
    """One sorted block of ok rows as manifest lines, in a part named after its first row."""
    import uuid

    if not block.num_rows:
        return pa.table({"manifest": pa.array([], pa.string()), "line_number": pa.array([], pa.int64()), "path": pa.array([], pa.string())})
    lines = []
    for item in block.to_pylist():
        record = manifest_row(item).to_json()
        if record.get("rttm_filepath"):
            record["reference_rttm_filepath"] = record["rttm_filepath"]
        record["rttm_filepath"] = layout.rttm_uri(item["uniq_id"])
        lines.append(json_text(record, indent=None) + "\n")
    path = layout.path(MANIFEST_PARTS, f"{uuid.uuid4().hex}.jsonl")
    layout.write_atomically(path, "".join(lines).encode("utf-8"))
    first = block.slice(0, 1).to_pylist()[0]
    return pa.table({"manifest": [first["manifest"]], "line_number": [first["line_number"]], "path": [path]})


def run_summary(layout: OutputLayout, input_rows: int, parts_before: set[str], wall_seconds: float, config: dict) -> dict[str, Any]:
    """Totals over `recordings`, streamed part by part (the driver never holds the table)."""
    import pyarrow.parquet as pq

    totals = {"rows": 0, "ok": 0, "audio": 0.0, "speech": 0.0, "audio_this_run": 0.0}
    for token in sorted(layout.part_tokens("recordings")):
        with layout.fs.open(layout.part_path("recordings", token), "rb") as f:
            table = pq.read_table(f, columns=["status", "duration", "speech_seconds"])
        ok = [(d, s) for status, d, s in zip(*(table[c].to_pylist() for c in table.column_names)) if status == "ok"]
        audio = sum(d for d, _ in ok)
        totals["rows"] += table.num_rows
        totals["ok"] += len(ok)
        totals["audio"] += audio
        totals["speech"] += sum(s for _, s in ok)
        totals["audio_this_run"] += audio if token not in parts_before else 0.0
    return {
        "input_rows": input_rows,
        "recorded_rows": totals["rows"],
        "ok": totals["ok"],
        "errors": totals["rows"] - totals["ok"],
        "audio_hours": totals["audio"] / 3600,
        "speech_hours": totals["speech"] / 3600,
        "wall_seconds": wall_seconds,
        "audio_seconds_per_wall_second": totals["audio_this_run"] / wall_seconds if wall_seconds else 0.0,
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
