"""`run_corpus`: the whole Ray Data plan of a corpus run, readable top to bottom.

    manifest lines (Ray read tasks: parse, validate)  ->  ids + resume filter (`inputs.assign_ids`)
    ->  error rows straight to the sink
    ->  ok rows: decode (CPU tasks)  ->  _diarize_forward (model actor pool)
        ->  _diarize_results (CPU tasks)  ->  RTTM + Parquet sink (`sinks`)
    ->  manifest.jsonl, summary.json (`finalize`, streamed from `recordings`)

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
import time
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.compute as pc
import ray
from ray.data.expressions import col

from pipeline.config import DiarizeConfig, with_nemo_speaker_counts
from pipeline.console import counted, still_working
from pipeline.corpus import preflight
from pipeline.corpus.finalize import json_text, run_summary, write_output_manifest
from pipeline.corpus.inputs import assign_ids, read_inputs, with_shuffle_for
from pipeline.corpus.lease import OutputInUse, OutputLease
from pipeline.corpus.options import RunOptions
from pipeline.corpus.outputs import OutputLayout, OutputWriteFailed
from pipeline.corpus.progress import CommitProgress
from pipeline.corpus.ray_session import connect_ray, release_failed_execution
from pipeline.corpus.sinks import CorpusSink
from pipeline.corpus.status import ERROR, OK, ORPHAN
from pipeline.errors import ModelKeepsFailing, UsageError, causes
from pipeline.signals import exit_on_sigterm

TARGET_BLOCK_AUDIO_SECONDS = 600.0  # about one commit per 10 minutes of audio, per block in flight
MAX_BATCHES_PER_BLOCK = 32
MIN_BLOCKS = 16  # a small corpus still spreads over tasks and commits as it goes
# The driver keeps a record of every block of the ok rows (Ray's split-repartition): 50,000 blocks of
# 4 rows (200,000 rows that give no duration) held it past 3 GB. Blocks grow instead.
MAX_BLOCKS = 2_000
# The rows that are errors from the read on (bad lines, local audio that is not there) are committed
# in parts of this many: a hundred parts for a million of them, each a commit the progress shows.
ERROR_ROWS_PER_PART = 10_000
RECORDED_COLUMNS = ["uniq_id", "manifest", "line_number", "row_key", "manifest_row"]


def run_corpus(
    manifests: RunOptions | str | Iterable[str], output: str | None = None, **options: Any
) -> dict[str, Any]:
    """Diarize every row of `manifests` (URIs or globs) into `output`; returns the run summary
    (also written to `output/summary.json`). Rows that fail become error rows, never a failed run.
    `options` are `RunOptions`' fields (or pass one `RunOptions`): `model` is a registered name,
    `package.module:factory` or an installed plug-in (`pipeline.models.registry`), built with
    `model_kwargs` and, when given, `checkpoint=` (a path or URI) in every worker; `num_actors` is a
    pool size or `(min, max)` / `"min,max"` for an autoscaling pool; `num_speakers` fixes every
    file's speaker count (over the manifests'), otherwise the estimate stays within
    `min_num_speakers`..`max_num_speakers` (pyannote's `min_speakers` / `max_speakers` are taken too).

    Before any work (`preflight.py`): the options, the model, a lease on `output` (one run per
    output; `resume` takes over the lease of a run that is gone) and the resources the actors ask
    for; each failure is one `UsageError` line.

    `dry_run=True` reads and checks every row (fields, ids, that the audio exists, its duration with
    `check_audio`) and returns a report (`dry_run.dry_run_report`) without writing anything.
    `limit`: only the first `limit` input rows, in manifest and line order (a trial run; a later run
    with a larger or no limit resumes it). Progress (recordings, hours, errors, ETA) is shown as
    `pipeline.console.CONSOLE` says."""
    started = time.perf_counter()
    run = (
        manifests
        if isinstance(manifests, RunOptions)
        else RunOptions(manifests=manifests, output=output, **with_nemo_speaker_counts(options))
    )
    # Options, model, YAML, manifests and output checked before Ray starts: a mistake is one line, at once.
    manifest_uris, (min_actors, max_actors), postprocessing = preflight.check_run(run)
    config = DiarizeConfig(
        batch_size=run.batch_size,
        max_num_speakers=run.max_num_speakers,
        min_num_speakers=run.min_num_speakers,
        num_speakers=run.num_speakers,
        exclusive=run.exclusive,
        postprocessing_yaml=run.postprocessing_yaml,
        postprocessing_params=postprocessing,
        verbose=False,
    )
    if run.dry_run:
        layout = OutputLayout(run.output, run.storage_options)
        has_records = layout.check_fresh(run.resume)
        connect_ray(run.address)
        with still_working(reading_rows(manifest_uris)):
            # with --retry-errors the error records are not done: the report counts their rows again
            todo, input_rows = rows_to_do(run, manifest_uris, layout if has_records else None, ok_only=run.retry_errors)
        from pipeline.corpus.dry_run import dry_run_report

        return dry_run_report(todo, input_rows, run)

    exit_on_sigterm()
    retried_errors = 0
    with OutputLease(run.output, run.storage_options).acquire(run.resume) as lease:
        try:
            layout = OutputLayout(run.output, run.storage_options)
            has_records = layout.prepare(run.resume)
            if has_records:
                preflight.check_same_labelling(run, layout)  # again, under the lease
                if run.repair:  # a footer read per part: only when asked (damage is named when a read fails)
                    layout.set_aside(layout.damaged_blocks())
                    has_records = bool(layout.part_tokens("recordings"))
                if run.retry_errors:
                    retried_errors = layout.retire_errors()
                    has_records = bool(layout.part_tokens("recordings"))
            layout.record_options(run.labelling(), replace=not has_records)
            connect_ray(run.address)
            preflight.check_resources(run.gpus_per_actor, run.actor_cpus, min_actors)
            with still_working(reading_rows(manifest_uris)):  # a million rows: a minute before the first commit
                todo, input_rows = rows_to_do(run, manifest_uris, layout if has_records else None)
                counts = row_counts(todo)
            parts_before = layout.part_tokens("recordings")
            sink = CorpusSink(layout, run.model, lease.fence())
            done_before = input_rows - counts[OK] - counts[ERROR]
            with CommitProgress(layout, input_rows, done_before, forward_rows=counts[OK]) as progress:
                if counts[ERROR]:
                    errors = todo.filter(expr=col("status") == ERROR)
                    # streamed: the first part is committed once its rows are filtered, not after all of them
                    errors.repartition(target_num_rows_per_block=ERROR_ROWS_PER_PART, strict=True).write_datasink(sink)
                if counts[OK]:
                    diarize_rows(todo, sink, counts, run, config, (min_actors, max_actors), progress.tally_key)

            if lease.lost_to is not None:
                raise OutputInUse(
                    f"another run took over the lease on {run.output} while this one worked "
                    f"(host {lease.lost_to.get('host')}, pid {lease.lost_to.get('pid')}); check that run's outputs"
                )
            layout.remove_uncommitted_parts()  # a fenced-off writer of a killed run may have left some
            write_output_manifest(layout, input_rows)
            summary = run_summary(layout, input_rows, parts_before, time.perf_counter() - started, config=run.summary())
            summary.update(
                processed_this_run=counts[OK] + counts[ERROR],
                skipped_by_resume=input_rows - counts[OK] - counts[ERROR],
                retried_errors=retried_errors,
            )
            layout.write_atomically(layout.path("summary.json"), (json_text(summary) + "\n").encode("utf-8"))
        except Exception as error:
            if any(isinstance(cause, pa.ArrowInvalid) for cause in causes(error)):
                OutputLayout(run.output, run.storage_options).refuse_damaged()  # names the part and the repair
            failure = run_failure(error, run.output)
            if failure is error:
                raise
            raise failure from error
    return summary


def reading_rows(manifest_uris: list[str]) -> str:
    return f"reading {counted(len(manifest_uris), 'manifest')} and giving each row its id"


def rows_to_do(run: RunOptions, manifest_uris: list[str], recorded_in: OutputLayout | None, ok_only: bool = False):
    """(the input rows with their ids, less those `recorded_in` holds records of, or ok records of with
    `ok_only`; the number of input rows). A line edited since it was recorded is refused."""
    parsed = first_rows(read_inputs(manifest_uris, run.storage_options, expanded=True), run.limit).materialize()
    input_rows = parsed.count()
    recorded = recorded_in.recorded(RECORDED_COLUMNS, ok_only=ok_only) if recorded_in is not None else None
    todo = assign_ids(parsed, input_rows, recorded).materialize()
    return (refuse_edited_lines(todo) if recorded is not None else todo), input_rows


def refuse_edited_lines(todo):
    """The rows to do without the id pass's ORPHANs (records whose manifest line no longer holds
    their row); refused when a row to do sits at an orphan's line: the line was edited since it was
    recorded, and resuming would record it twice. Orphans are few (edited or removed lines): their
    places come to the driver, the rows to do are searched by Ray tasks."""
    orphans = todo.filter(expr=col("status") == ORPHAN).select_columns(["manifest", "line_number"]).take_all()
    todo = todo.filter(expr=col("status") != ORPHAN).materialize()
    if not orphans:
        return todo
    places = pa.array(sorted({f"{row['manifest']}\n{row['line_number']}" for row in orphans}))

    def at_orphan_places(batch: pa.Table) -> pa.Table:
        keys = pc.binary_join_element_wise(batch["manifest"], pc.cast(batch["line_number"], pa.string()), "\n")
        return batch.filter(pc.is_in(keys, value_set=places)).select(["manifest", "line_number"])

    edited = todo.map_batches(at_orphan_places, batch_format="pyarrow").take_all()
    if edited:
        examples = ", ".join(f"{row['manifest']}:{row['line_number']}" for row in sorted(edited, key=str)[:3])
        raise UsageError(
            f"{len(edited)} manifest lines were edited since they were recorded (e.g. {examples}); "
            "resuming would record each twice: restore them; if they were error rows, --retry-errors labels them "
            "again; else label the edited rows into another --output"
        )
    return todo


def first_rows(parsed, limit: int | None):
    """The first `limit` rows by manifest and line (all rows when `limit` is None)."""
    if limit is None:
        return parsed
    parsed = parsed.materialize()  # its blocks decide how the sort shuffles (`with_shuffle_for`)
    return with_shuffle_for(parsed, parsed.num_blocks()).sort(["manifest", "line_number"]).limit(limit)


def diarize_rows(
    todo,
    sink: CorpusSink,
    counts: dict,
    run: RunOptions,
    config: DiarizeConfig,
    pool: tuple[int, int],
    tally_key: str | None = None,
) -> None:
    """The ok rows: decode (CPU tasks) -> forward (model actor pool) -> post-processing (CPU tasks) -> sink.
    The model actors tally the audio they go through under `tally_key` (`progress.ForwardTally`)."""
    from pipeline.corpus.workers import DiarizeForward, decode_recording, postprocess_batch  # torch-free

    min_actors, max_actors = pool
    rows_per_block = block_rows(run.batch_size, counts[OK], counts["ok_known_seconds"], counts["ok_known_rows"])
    recordings = todo.filter(expr=col("status") == OK).repartition(math.ceil(counts[OK] / rows_per_block))
    # A stage's exception reaches the driver as itself (so `run_failure` can name it),
    # not as a `UserCodeException` that keeps the cause only as text.
    recordings.context.raise_original_map_exception = True
    decoded = recordings.map(
        decode_recording, fn_kwargs={"storage_options": run.storage_options}, num_cpus=run.task_cpus
    )
    forwarded = decoded.map_batches(
        DiarizeForward,
        fn_constructor_kwargs={
            "model_name": run.model,
            "use_gpu": run.gpus_per_actor > 0,
            "threads": run.actor_threads,
            "pool_size": max_actors,
            "model_kwargs": run.factory_kwargs,
            "tally_key": tally_key,
        },
        batch_size=run.batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(min_size=min_actors, max_size=max_actors),
        num_cpus=run.actor_cpus,
        num_gpus=run.gpus_per_actor or None,
    )
    labelled = forwarded.map_batches(
        postprocess_batch,
        fn_kwargs={"model_name": run.model, "config": config, "model_kwargs": run.factory_kwargs},
        batch_size=run.batch_size,
        batch_format="numpy",
        num_cpus=run.task_cpus,
    )
    try:
        labelled.write_datasink(sink)
    except BaseException as error:  # a stage's failure; Ctrl-C too (its error did not keep the actors)
        release_failed_execution(error)
        raise


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
            where = (
                f" ({str(cause.filename).splitlines()[0]})" if cause.filename else ""
            )  # Ray Data appends notes to the last arg
            return OutputWriteFailed(
                f"cannot write to {output}{where}: {os.strerror(cause.errno)}; what was committed is kept: "
                "free space (or fix the output), then rerun with --resume"
            )
    return error


def row_counts(todo) -> dict[str, float]:
    """Ok and error rows still to do, and the seconds of the ok rows that give a duration: one small
    row per block comes back to the driver."""

    def count(batch: pa.Table) -> pa.Table:
        ok = pc.equal(batch["status"], OK)
        known = pc.and_(ok, pc.invert(pc.is_nan(batch["slice_duration"])))
        return pa.table(
            {
                OK: [pc.sum(ok.cast(pa.int64())).as_py() or 0],
                ERROR: [batch.num_rows - (pc.sum(ok.cast(pa.int64())).as_py() or 0)],
                "ok_known_rows": [pc.sum(known.cast(pa.int64())).as_py() or 0],
                "ok_known_seconds": [pc.sum(pc.if_else(known, batch["slice_duration"], 0.0)).as_py() or 0.0],
            }
        )

    totals = {OK: 0, ERROR: 0, "ok_known_rows": 0, "ok_known_seconds": 0.0}
    for row in todo.map_batches(count, batch_format="pyarrow", batch_size=None).iter_rows():
        for key in totals:
            totals[key] += row[key]
    return totals


def block_rows(batch_size: int, rows: int, known_seconds: float, known_rows: int) -> int:
    """Rows per block of the ok rows: whole model batches holding about `TARGET_BLOCK_AUDIO_SECONDS`
    of audio when the rows say how long they are (short slices travel many batches to a block, so
    per-block overhead does not dominate), one batch when they do not; never so many that the
    corpus makes fewer than `MIN_BLOCKS` blocks, nor so few that it makes more than `MAX_BLOCKS`."""
    at_least = math.ceil(rows / MAX_BLOCKS / batch_size)
    if not known_rows or not known_seconds:
        return batch_size * max(1, at_least)
    batches = TARGET_BLOCK_AUDIO_SECONDS / (batch_size * known_seconds / known_rows)
    spread = math.ceil(rows / MIN_BLOCKS / batch_size)
    return batch_size * max(1, at_least, min(MAX_BATCHES_PER_BLOCK, int(batches), spread))


OUTPUT_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}
