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

import errno
import math
import os
import platform
import re
import time
from collections import Counter
from typing import Any, Iterable

import pyarrow as pa
from ray.data.expressions import col
import ray

from ..config import DiarizeConfig, load_postprocessing_from_yaml
from . import preflight
from .inputs import assign_ids, expand_manifests, manifest_row, read_inputs
from .lease import OutputInUse, OutputLease
from .outputs import OutputLayout, OutputWriteFailed
from .progress import CommitProgress
from .preflight import ActorCount
from .ray_session import connect_ray, exit_on_sigterm
from .sinks import CorpusSink
from .stages import ModelKeepsFailing
from .storage import public_options

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
    min_num_speakers: int = 1,
    num_speakers: int | None = None,
    postprocessing_yaml: str | None = None,
    address: str | None = None,
    actor_cpus: float = 0.5,
    actor_threads: int | None = None,
    task_cpus: float = 1.0,
    model_kwargs: dict[str, Any] | None = None,
    checkpoint: str | None = None,
    dry_run: bool = False,
    check_audio: bool = False,
    limit: int | None = None,
) -> dict[str, Any]:
    """Diarize every row of `manifests` (URIs or globs) into `output`; returns the run summary
    (also written to `output/summary.json`). Rows that fail become error rows, never a failed run.
    `num_actors` is a pool size or `(min, max)` / `"min,max"` for an autoscaling pool. `model` is a
    registered name, `package.module:factory` or an installed plug-in (`pipeline.models`), built
    with `model_kwargs` and, when given, `checkpoint=` (a path or URI) in every worker.

    Before any work (`preflight.py`): the options, the model, a lease on `output` (one run per
    output; `resume` takes over the lease of a run that is gone) and the resources the actors ask
    for; each failure is one `UsageError` line.

    `num_speakers` fixes every file's speaker count (over the manifests' `num_speakers`);
    otherwise the estimate stays within `min_num_speakers`..`max_num_speakers`.

    `dry_run=True` reads and checks every row (fields, ids, that the audio exists, its duration with
    `check_audio`) and returns a report (`dry_run.dry_run_report`) without writing anything.
    `limit`: only the first `limit` input rows, in manifest and line order (a trial run; a later run
    with a larger or no limit resumes it). Progress (recordings, hours, errors, ETA) is shown as
    `pipeline.console.CONSOLE` says."""
    started = time.perf_counter()
    manifests = [manifests] if isinstance(manifests, str) else list(manifests)
    min_actors, max_actors = preflight.check_options(batch_size, max_num_speakers, num_actors, gpus_per_actor,
                                                     actor_cpus, actor_threads, task_cpus, min_num_speakers, num_speakers)
    model_kwargs = {**(model_kwargs or {}), **({"checkpoint": checkpoint} if checkpoint else {})}
    preflight.check_model(model, model_kwargs)
    # Globs listed and manifests found before Ray starts: a wrong path or bucket is one line, at once.
    manifest_uris = expand_manifests(manifests, storage_options)
    config = DiarizeConfig(
        batch_size=batch_size,
        max_num_speakers=max_num_speakers,
        min_num_speakers=min_num_speakers,
        num_speakers=num_speakers,
        postprocessing_yaml=postprocessing_yaml,
        postprocessing_params=load_postprocessing_from_yaml(postprocessing_yaml),
        verbose=False,
    )
    if dry_run:
        layout = OutputLayout(output, storage_options)
        has_records = layout.check_fresh(resume)
        connect_ray(address)
        parsed = first_rows(read_inputs(manifest_uris, storage_options, expanded=True), limit).materialize()
        input_rows = parsed.count()
        todo = assign_ids(parsed, input_rows, layout.recorded(RECORDED_COLUMNS) if has_records else None).materialize()
        from .dry_run import dry_run_report

        return dry_run_report(todo, input_rows, storage_options, check_audio, task_cpus)

    exit_on_sigterm()
    with OutputLease(output, storage_options).acquire(resume) as lease:
        try:
            layout = OutputLayout(output, storage_options)
            has_records = layout.prepare(resume)
            connect_ray(address)
            preflight.check_resources(gpus_per_actor, actor_cpus, min_actors)
            parsed = first_rows(read_inputs(manifest_uris, storage_options, expanded=True), limit).materialize()
            input_rows = parsed.count()
            recorded = layout.recorded(RECORDED_COLUMNS) if has_records else None
            todo = assign_ids(parsed, input_rows, recorded).materialize()
            counts = row_counts(todo)
            parts_before = layout.part_tokens("recordings")
            sink = CorpusSink(layout, model)
            with CommitProgress(layout, total=input_rows, already_done=input_rows - counts["ok"] - counts["error"]):
                if counts["error"]:
                    todo.filter(expr=col("status") == "error").write_datasink(sink)
                if counts["ok"]:
                    diarize_rows(todo, sink, counts, model, config, model_kwargs, batch_size, min_actors, max_actors,
                                 gpus_per_actor, actor_cpus, actor_threads, task_cpus, storage_options)

            if lease.lost_to is not None:
                raise OutputInUse(f"another run took over the lease on {output} while this one worked "
                                  f"(host {lease.lost_to.get('host')}, pid {lease.lost_to.get('pid')}); check that run's outputs")
            write_output_manifest(layout, input_rows)
            summary = run_summary(
                layout, input_rows, parts_before, time.perf_counter() - started,
                config={
                    "manifests": manifests, "output": output, "model": model, "model_kwargs": model_kwargs, "batch_size": batch_size,
                    "num_actors": [min_actors, max_actors], "gpus_per_actor": gpus_per_actor, "actor_cpus": actor_cpus, "actor_threads": actor_threads,
                    "task_cpus": task_cpus, "resume": resume, "max_num_speakers": max_num_speakers,
                    "min_num_speakers": min_num_speakers, "num_speakers": num_speakers,
                    "postprocessing_yaml": postprocessing_yaml, "storage_options": public_options(storage_options),
                    "limit": limit,
                },
            )
            summary.update(processed_this_run=counts["ok"] + counts["error"], skipped_by_resume=input_rows - counts["ok"] - counts["error"])
            layout.write_atomically(layout.path("summary.json"), (json_text(summary) + "\n").encode("utf-8"))
        except Exception as error:
            failure = run_failure(error, output)
            if failure is error:
                raise
            raise failure from error
    return summary


def first_rows(parsed, limit: int | None):
    """The first `limit` rows by manifest and line (all rows when `limit` is None)."""
    if limit is None:
        return parsed
    return parsed.sort(["manifest", "line_number"]).limit(limit)


def diarize_rows(todo, sink: CorpusSink, counts: dict, model: str, config: DiarizeConfig, model_kwargs: dict, batch_size: int,
                 min_actors: int, max_actors: int, gpus_per_actor: float, actor_cpus: float, actor_threads: int | None,
                 task_cpus: float, storage_options: dict | None) -> None:
    """The ok rows: decode (CPU tasks) -> forward (model actor pool) -> post-processing (CPU tasks) -> sink."""
    from .stages import DiarizeForward, decode_recording, postprocess_batch

    rows_per_block = block_rows(batch_size, counts["ok"], counts["ok_known_seconds"], counts["ok_known_rows"])
    recordings = todo.filter(expr=col("status") == "ok").repartition(math.ceil(counts["ok"] / rows_per_block))
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
    labelled.write_datasink(sink)


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


# Up to this many recordings the output manifest is sorted on the driver (tens of MB of lines): Ray's
# read, sort and write stages cost seconds of fixed overhead, more than sorting the rows here.
DRIVER_MANIFEST_ROWS = 100_000
MANIFEST_COLUMNS = ["uniq_id", "manifest", "line_number", "status", "manifest_row"]
MANIFEST_PARTS = ".manifest-parts"


def write_output_manifest(layout: OutputLayout, recordings: int, on_driver: bool | None = None) -> None:
    """The ok rows of `recordings`, sorted by manifest and line, with `rttm_filepath` at the written
    RTTM (the reference RTTM the row named, if any, moves to `reference_rttm_filepath`).
    `recordings` (rows in the run's `recordings`) decides where (`on_driver` overrides): up to
    `DRIVER_MANIFEST_ROWS` the driver reads and sorts them; above, Ray sorts the rows and writes one
    part per sorted block, and the driver only concatenates the parts' bytes in order (it never
    holds rows, nor maps them from the object store)."""
    import shutil

    if on_driver is None:
        on_driver = recordings <= DRIVER_MANIFEST_ROWS
    parts_folder = layout.path(MANIFEST_PARTS)
    if layout.fs.exists(parts_folder):
        layout.fs.rm(parts_folder, recursive=True)
    if on_driver:
        with layout.open_atomically(layout.path("manifest.jsonl")) as out:
            out.write(manifest_lines(sorted_ok_recordings(layout), layout).encode("utf-8"))
        return
    recorded = layout.recorded(MANIFEST_COLUMNS)
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


def sorted_ok_recordings(layout: OutputLayout) -> pa.Table:
    """The ok rows of `recordings` (the manifest columns), sorted by manifest and line, on the driver."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from .tables import RECORDINGS_SCHEMA

    schema = pa.schema([RECORDINGS_SCHEMA.field(name) for name in MANIFEST_COLUMNS])
    tables = []
    for part in layout.recorded_parts():
        with layout.fs.open(part, "rb") as f:
            table = pq.read_table(f, columns=MANIFEST_COLUMNS).cast(schema)
        tables.append(table.filter(pc.equal(table["status"], "ok")))
    ok = pa.concat_tables(tables) if tables else schema.empty_table()
    return ok.sort_by([("manifest", "ascending"), ("line_number", "ascending")])


def manifest_lines(block: pa.Table, layout: OutputLayout) -> str:
    """Rows of `recordings` as output manifest lines (NeMo's fields; `rttm_filepath` at our RTTM)."""
    lines = []
    for item in block.to_pylist():
        record = manifest_row(item).to_json()
        if record.get("rttm_filepath"):
            record["reference_rttm_filepath"] = record["rttm_filepath"]
        record["rttm_filepath"] = layout.rttm_uri(item["uniq_id"])
        lines.append(json_text(record, indent=None) + "\n")
    return "".join(lines)


def write_manifest_part(block: pa.Table, layout: OutputLayout) -> pa.Table:
    """One sorted block of ok rows as manifest lines, in a part named after its first row."""
    import uuid

    if not block.num_rows:
        return pa.table({"manifest": pa.array([], pa.string()), "line_number": pa.array([], pa.int64()), "path": pa.array([], pa.string())})
    path = layout.path(MANIFEST_PARTS, f"{uuid.uuid4().hex}.jsonl")
    layout.write_atomically(path, manifest_lines(block, layout).encode("utf-8"))
    first = block.slice(0, 1).to_pylist()[0]
    return pa.table({"manifest": [first["manifest"]], "line_number": [first["line_number"]], "path": [path]})


def run_summary(layout: OutputLayout, input_rows: int, parts_before: set[str], wall_seconds: float, config: dict) -> dict[str, Any]:
    """Totals over `recordings`, streamed part by part (the driver never holds the table)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    totals = {"rows": 0, "ok": 0, "audio": 0.0, "speech": 0.0, "audio_this_run": 0.0}
    reasons: Counter = Counter()
    for token in sorted(layout.part_tokens("recordings")):
        with layout.fs.open(layout.part_path("recordings", token), "rb") as f:
            table = pq.read_table(f, columns=["status", "duration", "speech_seconds", "error", "manifest", "line_number", "audio_filepath"])
        reasons.update(error_reason(row) for row in table.filter(pc.not_equal(table["status"], "ok")).to_pylist())
        ok = [(d, s) for status, d, s in zip(*(table[c].to_pylist() for c in ("status", "duration", "speech_seconds"))) if status == "ok"]
        audio = sum(d for d, _ in ok)
        totals["rows"] += table.num_rows
        totals["ok"] += len(ok)
        totals["audio"] += audio
        totals["speech"] += sum(s for _, s in ok)
        totals["audio_this_run"] += audio if token not in parts_before else 0.0
    return {
        "input_rows": input_rows,
        "recorded_rows": totals["rows"],
        "speakers": speakers_summary(layout, totals["ok"]),
        "ok": totals["ok"],
        "errors": totals["rows"] - totals["ok"],
        "errors_by_reason": dict(reasons.most_common()),
        "audio_hours": totals["audio"] / 3600,
        "speech_hours": totals["speech"] / 3600,
        "wall_seconds": wall_seconds,
        "audio_seconds_per_wall_second": totals["audio_this_run"] / wall_seconds if wall_seconds else 0.0,
        "config": config,
        "versions": versions(),
    }


NO_EMBEDDINGS_NOTE = ("the model gives no speaker embeddings (InternalDiarizeConfig.speaker_embeddings): "
                      "speakers/ is empty and link-speakers has nothing to link")


def speakers_summary(layout: OutputLayout, ok_rows: int) -> dict[str, Any]:
    """Rows of `speakers/` and the centroid size, from the parts' Parquet footers; a note when ok
    recordings gave no centroid at all (a model without embeddings)."""
    import pyarrow.parquet as pq

    rows, size = 0, None
    for path in layout.committed_parts("speakers"):
        with layout.fs.open(path, "rb") as f:
            metadata = pq.ParquetFile(f).metadata
            rows += metadata.num_rows
            if size is None:
                size = metadata.schema.to_arrow_schema().field("centroid").type.list_size
    summary: dict[str, Any] = {"rows": rows, "embedding_size": size}
    if ok_rows and not rows:
        summary["note"] = NO_EMBEDDINGS_NOTE
    return summary


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
