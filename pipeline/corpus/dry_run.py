"""`diarize --dry-run`: what a run would do, found before any GPU hour is spent.

Every row is read, parsed and given its id exactly as a run would (`inputs`); then Ray tasks check
that each ok row's audio exists (one metadata request per file) and, with `check_audio`, read its
header for the duration. The report counts rows, errors (by reason, with examples), hours of audio
and an estimate of the model time; nothing is written anywhere."""

from __future__ import annotations

import math
import re
from typing import Any

import pyarrow as pa
from ray.data.expressions import col

from pipeline.corpus.options import RunOptions
from pipeline.io.audio import audio_info
from pipeline.io.storage import filesystem, options_for

# Audio seconds one model actor labels per second: the default model on 2 CPU threads does about 60
# (docs/RESULTS.md, "Ray against an in-process loop"); pass `audio_seconds_per_actor_second` for others.
DEFAULT_AUDIO_SECONDS_PER_ACTOR_SECOND = 60.0
EXAMPLES = 20


def check_rows(batch: pa.Table, storage_options: dict | None, check_audio: bool) -> pa.Table:
    """Ok rows whose audio is missing (or, with `check_audio`, undecodable) become error rows; with
    `check_audio` a row without a duration gets the seconds its slice holds."""
    rows = batch.to_pylist()
    for row in rows:
        if row["status"] != "ok":
            continue
        path = row["audio_filepath"]
        try:
            if check_audio:
                info = audio_info(path, options_for(path, storage_options))
                available = max(0.0, info.duration - row["offset"])
                if row["offset"] > info.duration:
                    raise ValueError(f"offset {row['offset']:.3f}s is past the end of {path} ({info.duration:.3f}s)")
                row["slice_duration"] = (
                    available if math.isnan(row["slice_duration"]) else min(row["slice_duration"], available)
                )
            else:
                fs, stripped = filesystem(path, storage_options)
                if not fs.exists(stripped):
                    raise FileNotFoundError(f"audio file not found: {path}")
        except FileNotFoundError:
            row.update(status="error", error=f"audio file not found: {path}")
        except Exception as error:  # noqa: BLE001 - any failure is this row's error
            from pipeline.corpus.stages import describe

            row.update(status="error", error=describe(error))
    return pa.Table.from_pylist(rows, schema=batch.schema)


def reason_of(error: str) -> str:
    """An error's kind, for counting: the message without the manifest:line prefix, paths and values."""
    reason = re.sub(r"^.*?:\d+: ", "", error)
    reason = reason.split(":")[0] if reason.startswith(("audio file not found", "cannot decode")) else reason
    return re.sub(r"'[^']*'|\"[^\"]*\"|-?\d+(\.\d+)?(e[+-]?\d+)?", "…", reason)[:120]


def dry_run_report(
    todo,
    input_rows: int,
    run: RunOptions,
    audio_seconds_per_actor_second: float = DEFAULT_AUDIO_SECONDS_PER_ACTOR_SECOND,
) -> dict[str, Any]:
    checked = todo.map_batches(
        check_rows,
        fn_kwargs={"storage_options": run.storage_options, "check_audio": run.check_audio},
        batch_format="pyarrow",
        batch_size=1024,
        num_cpus=run.task_cpus,
    ).materialize()

    def tally(batch: pa.Table) -> pa.Table:
        reasons: dict[str, int] = {}
        ok = known = 0
        seconds = 0.0
        for status, error, duration in zip(*(batch[c].to_pylist() for c in ("status", "error", "slice_duration"))):
            if status == "ok":
                ok += 1
                if not math.isnan(duration):
                    known, seconds = known + 1, seconds + duration
            else:
                reasons[reason_of(error)] = reasons.get(reason_of(error), 0) + 1
        return pa.table(
            {
                "ok": [ok],
                "known": [known],
                "seconds": [seconds],
                "rows": [batch.num_rows],
                "reasons": pa.array([list(reasons)], pa.list_(pa.string())),
                "reason_counts": pa.array([list(reasons.values())], pa.list_(pa.int64())),
            }
        )

    totals = {"ok": 0, "known": 0, "seconds": 0.0, "rows": 0}
    reasons: dict[str, int] = {}
    for row in checked.map_batches(tally, batch_format="pyarrow", batch_size=None).iter_rows():
        for key in totals:
            totals[key] += row[key]
        for reason, count in zip(row["reasons"], row["reason_counts"]):
            reasons[reason] = reasons.get(reason, 0) + count
    errors = totals["rows"] - totals["ok"]
    examples = checked.filter(expr=col("status") == "error").limit(EXAMPLES).take_all() if errors else []
    hours = totals["seconds"] / 3600
    return {
        "dry_run": True,
        "input_rows": input_rows,
        "already_recorded": input_rows - totals["rows"],
        "rows_to_do": totals["rows"],
        "ok": totals["ok"],
        "errors": errors,
        "errors_by_reason": dict(sorted(reasons.items(), key=lambda item: -item[1])),
        "error_examples": [row["error"] for row in examples],
        "audio_hours": hours,
        "ok_rows_without_duration": totals["ok"] - totals["known"],
        "audio_checked": run.check_audio,
        "estimated_actor_hours": hours / audio_seconds_per_actor_second,
        "audio_seconds_per_actor_second_assumed": audio_seconds_per_actor_second,
    }
