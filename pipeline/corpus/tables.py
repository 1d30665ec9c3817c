"""The Parquet tables of a corpus run, with explicit Arrow types (seconds are float64, ids strings).

`segments`: one row per speaker turn. `recordings`: one row per input row, ok or error, which is
what makes "input rows = ok rows + error rows" checkable by reading the table back."""

from __future__ import annotations

from typing import Any, Iterable

import pyarrow as pa

from ..rttm import Turn, parse_segment

SEGMENTS_SCHEMA = pa.schema([
    pa.field("uniq_id", pa.string(), nullable=False),
    pa.field("audio_filepath", pa.string(), nullable=False),
    pa.field("speaker", pa.string(), nullable=False),
    pa.field("start", pa.float64(), nullable=False),
    pa.field("end", pa.float64(), nullable=False),
    pa.field("duration", pa.float64(), nullable=False),
    pa.field("model", pa.string(), nullable=False),
])

RECORDINGS_SCHEMA = pa.schema([
    pa.field("uniq_id", pa.string()),  # null for a manifest line with no usable row
    pa.field("audio_filepath", pa.string()),  # resolved path or URI; null when the line has none
    pa.field("manifest", pa.string(), nullable=False),
    pa.field("line_number", pa.int64(), nullable=False),
    pa.field("duration", pa.float64()),  # seconds of audio diarized; null for error rows
    pa.field("num_speakers", pa.int64()),  # speakers found; null for error rows
    pa.field("speech_seconds", pa.float64()),  # union of all turns; null for error rows
    pa.field("status", pa.string(), nullable=False),  # "ok" or "error"
    pa.field("error", pa.string()),  # readable reason; null for ok rows
    pa.field("processing_seconds", pa.float64(), nullable=False),  # decode + forward share + post-processing
    pa.field("model", pa.string(), nullable=False),
    pa.field("row_key", pa.string()),  # what identifies the input across runs (`pipeline.ids`); null for a line with no row
    pa.field("manifest_row", pa.string()),  # the input row as JSON (paths resolved, uniq_id before disambiguation)
])


def turns_of(row: dict[str, Any]) -> list[Turn]:
    return [parse_segment(line) for line in row["segments"].splitlines()] if row["status"] == "ok" else []


def speech_seconds(turns: Iterable[Turn]) -> float:
    """Seconds during which anybody speaks (overlapping turns counted once)."""
    total, covered_until = 0.0, float("-inf")
    for turn in sorted(turns, key=lambda t: t.start):
        start = max(turn.start, covered_until)
        if turn.end > start:
            total += turn.end - start
            covered_until = turn.end
    return total


def segments_table(rows: Iterable[dict[str, Any]], model: str) -> pa.Table:
    records = [
        {
            "uniq_id": row["uniq_id"],
            "audio_filepath": row["audio_filepath"],
            "speaker": turn.speaker,
            "start": turn.start,
            "end": turn.end,
            "duration": turn.duration,
            "model": model,
        }
        for row in rows
        for turn in turns_of(row)
    ]
    return pa.Table.from_pylist(records, schema=SEGMENTS_SCHEMA)


def recordings_table(rows: Iterable[dict[str, Any]], model: str) -> pa.Table:
    records = []
    for row in rows:
        ok = row["status"] == "ok"
        turns = turns_of(row)
        records.append({
            "uniq_id": row["uniq_id"] or None,
            "audio_filepath": row["audio_filepath"] or None,
            "manifest": row["manifest"],
            "line_number": int(row["line_number"]),
            "duration": float(row["audio_seconds"]) if ok else None,
            "num_speakers": len({turn.speaker for turn in turns}) if ok else None,
            "speech_seconds": speech_seconds(turns) if ok else None,
            "status": row["status"],
            "error": None if ok else row["error"],
            "processing_seconds": float(row.get("decode_seconds", 0.0) + row.get("forward_seconds", 0.0) + row.get("post_seconds", 0.0)),
            "model": model,
            "row_key": row.get("row_key") or None,
            "manifest_row": row.get("manifest_row") or None,
        })
    return pa.Table.from_pylist(records, schema=RECORDINGS_SCHEMA)
