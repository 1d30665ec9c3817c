"""What a corpus run writes once its plan has finished: the output manifest (`manifest.jsonl`, the ok
rows in manifest and line order, pointing at their RTTMs) and the run summary (`summary.json`),
both from the committed `recordings` parts, never from rows held on the driver."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import uuid
from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray
from ray.data.expressions import col

from pipeline.console import counted
from pipeline.corpus.inputs import manifest_row
from pipeline.corpus.outputs import OutputLayout
from pipeline.corpus.status import OK
from pipeline.corpus.tables import RECORDINGS_SCHEMA

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
        ok = recorded.filter(expr=col("status") == OK).sort(["manifest", "line_number"])
        parts = ok.map_batches(
            write_manifest_part, fn_kwargs={"layout": layout}, batch_size=None, batch_format="pyarrow"
        ).take_all()
    with layout.open_atomically(layout.path("manifest.jsonl")) as out:
        for part in sorted(parts, key=lambda p: (p["manifest"], p["line_number"])):
            with layout.fs.open(part["path"], "rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)
    if parts:
        layout.fs.rm(parts_folder, recursive=True)


def sorted_ok_recordings(layout: OutputLayout) -> pa.Table:
    """The ok rows of `recordings` (the manifest columns), sorted by manifest and line, on the driver."""

    schema = pa.schema([RECORDINGS_SCHEMA.field(name) for name in MANIFEST_COLUMNS])
    tables = []
    for part in layout.recorded_parts():
        with layout.fs.open(part, "rb") as f:
            table = pq.read_table(f, columns=MANIFEST_COLUMNS).cast(schema)
        tables.append(table.filter(pc.equal(table["status"], OK)))
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
    if not block.num_rows:
        return pa.table(
            {
                "manifest": pa.array([], pa.string()),
                "line_number": pa.array([], pa.int64()),
                "path": pa.array([], pa.string()),
            }
        )
    path = layout.path(MANIFEST_PARTS, f"{uuid.uuid4().hex}.jsonl")
    layout.write_atomically(path, manifest_lines(block, layout).encode("utf-8"))
    first = block.slice(0, 1).to_pylist()[0]
    return pa.table({"manifest": [first["manifest"]], "line_number": [first["line_number"]], "path": [path]})


SUMMARY_COLUMNS = [
    "status",
    "duration",
    "speech_seconds",
    "error",
    "manifest",
    "line_number",
    "audio_filepath",
    "uniq_id",
    "num_speakers",
    "manifest_row",
]
SUMMARY_BATCH_ROWS = 4096


def run_summary(
    layout: OutputLayout, input_rows: int, parts_before: set[str], wall_seconds: float, config: dict
) -> dict[str, Any]:
    """Totals over `recordings`, streamed part by part (the driver never holds the table)."""

    totals = {"rows": 0, "ok": 0, "audio": 0.0, "speech": 0.0, "audio_this_run": 0.0}
    reasons: Counter = Counter()
    fewer_speakers, examples = 0, []  # ok rows that found fewer speakers than their known count
    for token in sorted(layout.part_tokens("recordings")):
        with layout.fs.open(layout.part_path("recordings", token), "rb") as f:
            # a batch at a time: an error part of a large run holds tens of thousands of rows
            for batch in pq.ParquetFile(f).iter_batches(batch_size=SUMMARY_BATCH_ROWS, columns=SUMMARY_COLUMNS):
                table = pa.Table.from_batches([batch])
                reasons.update(error_reason(row) for row in table.filter(pc.not_equal(table["status"], OK)).to_pylist())
                ok = table.filter(pc.equal(table["status"], OK))
                audio = pc.sum(ok["duration"]).as_py() or 0.0
                totals["rows"] += table.num_rows
                totals["ok"] += ok.num_rows
                totals["audio"] += audio
                totals["speech"] += pc.sum(ok["speech_seconds"]).as_py() or 0.0
                totals["audio_this_run"] += audio if token not in parts_before else 0.0
                for row in ok.to_pylist():
                    asked = config.get("num_speakers") or json.loads(row["manifest_row"] or "{}").get("num_speakers")
                    if asked and (row["num_speakers"] or 0) < asked:
                        fewer_speakers += 1
                        if len(examples) < 3:
                            examples.append(f"{row['uniq_id']}: {asked} asked, {row['num_speakers'] or 0} found")
    notes = []
    if input_rows == 0:
        notes.append("the manifests hold no rows: nothing to label")
    if fewer_speakers:
        notes.append(
            f"{counted(fewer_speakers, 'ok row')} found fewer speakers than "
            f"{'its' if fewer_speakers == 1 else 'their'} num_speakers "
            f"(the audio held no more voices the model could tell apart), e.g. {'; '.join(examples)}"
        )
    return {
        "input_rows": input_rows,
        "recorded_rows": totals["rows"],
        "speakers": speakers_summary(layout, totals["ok"]),
        "ok": totals["ok"],
        "errors": totals["rows"] - totals["ok"],
        "errors_by_reason": dict(reasons.most_common()),
        "audio_hours": totals["audio"] / 3600,
        "audio_hours_this_run": totals["audio_this_run"] / 3600,
        "speech_hours": totals["speech"] / 3600,
        "wall_seconds": wall_seconds,
        "audio_seconds_per_wall_second": totals["audio_this_run"] / wall_seconds if wall_seconds else 0.0,
        "config": config,
        "versions": versions(),
        "notes": notes,
    }


NO_EMBEDDINGS_NOTE = (
    "the model gives no speaker embeddings (its results carry no speaker_embeddings): "
    "speakers/ is empty and link-speakers has nothing to link"
)


def speakers_summary(layout: OutputLayout, ok_rows: int) -> dict[str, Any]:
    """Rows of `speakers/` and the centroid size, from the parts' Parquet footers; a note when ok
    recordings gave no centroid at all (a model without embeddings)."""

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
        text = text[len(location) :]
    path = row.get("audio_filepath") or ""
    for name in sorted({path, os.path.basename(path)} - {""}, key=len, reverse=True):
        text = text.replace(name, "<file>")
    return re.sub(r"\d+(\.\d+)?", "N", text)[:160]


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str:  # from the package's metadata: the driver never imports torch
        try:
            return version(name)
        except PackageNotFoundError:
            return "unknown"

    return {
        "corpus-diarization": installed("corpus-diarization"),
        "python": platform.python_version(),
        "ray": ray.__version__,
        "torch": installed("torch"),
        "pyarrow": pa.__version__,
    }


def json_text(value: Any, indent: int | None = 2) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=False)
