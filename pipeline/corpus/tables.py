"""The Parquet tables of a corpus run, with explicit Arrow types (seconds are float64, ids strings).

`segments`: one row per speaker turn. `recordings`: one row per input row, ok or error, which is
what makes "input rows = ok rows + error rows" checkable by reading the table back. `speakers`: one
row per (recording, speaker) with the speaker's embedding centroid (`pipeline.speakers`), the input
of corpus-wide speaker linking (`pipeline.linking.run`); empty when the model gives no embeddings."""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import pyarrow as pa

from pipeline.io.rttm import Turn, parse_segment
from pipeline.speakers import unpack_centroids

SEGMENTS_SCHEMA = pa.schema(
    [
        pa.field("uniq_id", pa.string(), nullable=False),
        pa.field("audio_filepath", pa.string(), nullable=False),
        pa.field("speaker", pa.string(), nullable=False),
        pa.field("start", pa.float64(), nullable=False),
        pa.field("end", pa.float64(), nullable=False),
        pa.field("duration", pa.float64(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
    ]
)

RECORDINGS_SCHEMA = pa.schema(
    [
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
        pa.field(
            "row_key", pa.string()
        ),  # what identifies the input across runs (`pipeline.io.ids`); null for a line with no row
        pa.field("manifest_row", pa.string()),  # the input row as JSON (paths resolved, uniq_id before disambiguation)
    ]
)


def speakers_schema(dim: int) -> pa.Schema:
    """`speakers`: the centroid is a fixed-size list of `dim` float32 (the model's embedding size)."""
    return pa.schema(
        [
            pa.field("uniq_id", pa.string(), nullable=False),
            pa.field("speaker", pa.string(), nullable=False),  # `speaker_k`, as in segments and the RTTM
            pa.field("speech_seconds", pa.float64(), nullable=False),  # union of the speaker's turns
            pa.field("num_embeddings", pa.int64(), nullable=False),  # embeddings averaged into the centroid
            pa.field("centroid", pa.list_(pa.float32(), dim), nullable=False),  # unit L2 norm
            pa.field("model", pa.string(), nullable=False),
        ]
    )


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
        records.append(
            {
                "uniq_id": row["uniq_id"] or None,
                "audio_filepath": row["audio_filepath"] or None,
                "manifest": row["manifest"],
                "line_number": int(row["line_number"]),
                "duration": float(row["audio_seconds"]) if ok else None,
                "num_speakers": len({turn.speaker for turn in turns}) if ok else None,
                "speech_seconds": speech_seconds(turns) if ok else None,
                "status": row["status"],
                "error": None if ok else row["error"],
                "processing_seconds": float(
                    row.get("decode_seconds", 0.0) + row.get("forward_seconds", 0.0) + row.get("post_seconds", 0.0)
                ),
                "model": model,
                "row_key": row.get("row_key") or None,
                "manifest_row": row.get("manifest_row") or None,
            }
        )
    return pa.Table.from_pylist(records, schema=RECORDINGS_SCHEMA)


def speakers_table(rows: Iterable[dict[str, Any]], model: str) -> pa.Table | None:
    """One row per (ok recording, speaker with a centroid); None when no row has any (a model
    without embeddings, or a block of error rows): no part is written then."""
    records, dims = [], set()
    for row in rows:
        if row["status"] != "ok":
            continue
        centroids = unpack_centroids(row.get("speaker_centroids"))
        if not centroids:
            continue
        turns = turns_of(row)
        for speaker in sorted(centroids, key=speaker_order):
            vector, count = centroids[speaker]
            vector = np.asarray(vector, dtype=np.float32).reshape(-1)
            dims.add(len(vector))
            records.append(
                {
                    "uniq_id": row["uniq_id"],
                    "speaker": speaker,
                    "speech_seconds": speech_seconds(t for t in turns if t.speaker == speaker),
                    "num_embeddings": int(count),
                    "centroid": vector,
                    "model": model,
                }
            )
    if not records:
        return None
    if len(dims) != 1:
        raise ValueError(f"the model gave speaker centroids of several sizes {sorted(dims)} in one block")
    (dim,) = dims
    columns = {
        name: [r[name] for r in records] for name in ("uniq_id", "speaker", "speech_seconds", "num_embeddings", "model")
    }
    flat = pa.array(np.concatenate([r["centroid"] for r in records]), type=pa.float32())
    columns["centroid"] = pa.FixedSizeListArray.from_arrays(flat, dim)
    schema = speakers_schema(dim)
    return pa.table(
        [
            columns[name] if name == "centroid" else pa.array(columns[name], schema.field(name).type)
            for name in schema.names
        ],
        schema=schema,
    )


def speaker_order(name: str) -> tuple:
    """`speaker_2` before `speaker_10`; other names after, by text."""
    prefix, _, number = name.rpartition("_")
    return (0, int(number), name) if prefix == "speaker" and number.isdigit() else (1, 0, name)
