"""The corpus's input rows, read and given ids by Ray, never held by the driver.

    manifests (globs expanded)  ->  `ManifestLines`: Ray read tasks stream each file (gzip/zstd by
    its suffix), parse and validate every line on the workers  ->  one row per line, ok or error
    ->  `assign_ids`: one grouped pass (rows hashed by candidate id into buckets) that makes ids
    unique and, on `--resume`, drops the inputs already recorded in the output.

The driver only lists manifest files and counts rows, so its memory does not grow with the corpus.
Ids follow `pipeline.io.ids`: a recorded id never changes and a recorded input is never labelled again,
however the corpus grows. A line that cannot be used (bad JSON, a bad field, an encoding that is not
UTF-8) is an error row naming manifest, line and reason, never a failed run."""

from __future__ import annotations

import json
import math
import os
from typing import Any, Iterable, Iterator

import pyarrow as pa
from ray.data.datasource import FileBasedDatasource

from pipeline.corpus.status import ERROR, OK, ORPHAN
from pipeline.io.ids import assign_group_ids, recording_hash, row_keys, sha1_hex
from pipeline.io.manifest import ManifestError, ManifestRow, expand_manifests, parse_line
from pipeline.io.storage import filesystem, is_local

ROWS_PER_READ_BLOCK = 4096
READ_CHUNK_BYTES = 1 << 20

# One schema for every block of input rows: no nulls ("" and NaN instead), so blocks always concatenate.
INPUT_SCHEMA = pa.schema(
    [
        ("manifest", pa.string()),
        ("line_number", pa.int64()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("candidate", pa.string()),  # the id before disambiguation; "" for a line with no usable row
        ("recording_hash", pa.string()),  # `ids.recording_hash`; "" likewise
        ("audio_filepath", pa.string()),
        ("offset", pa.float64()),
        ("slice_duration", pa.float64()),  # NaN: to the end of the file
        ("num_speakers", pa.int64()),  # 0: estimate
        ("manifest_row", pa.string()),  # the row as NeMo writes it (JSON, paths resolved); "" likewise
        ("uniq_id", pa.string()),  # filled by `assign_ids`
        ("row_key", pa.string()),  # filled by `assign_ids`
        ("recorded", pa.bool_()),  # True for the rows of a previous run, joined in on --resume
    ]
)

_ENCODINGS_BY_BOM = {
    b"\xff\xfe\x00\x00": "UTF-32-LE",
    b"\x00\x00\xfe\xff": "UTF-32-BE",
    b"\xff\xfe": "UTF-16-LE",
    b"\xfe\xff": "UTF-16-BE",
}
_AUDIO_MAGIC = {
    b"RIFF": "WAV",
    b"RF64": "WAV",
    b"fLaC": "FLAC",
    b"OggS": "Ogg",
    b"ID3": "MP3",
    b"\xff\xfb": "MP3",
    b"\x1a\x45\xdf\xa3": "WebM/Matroska",
}
_COMPRESSION_MAGIC = {b"\x1f\x8b": ".gz", b"\x28\xb5\x2f\xfd": ".zst", b"BZh": ".bz2"}
UTF8_BOM = b"\xef\xbb\xbf"


def input_item(manifest: str, line_number: int, row: ManifestRow | None = None, error: str = "") -> dict[str, Any]:
    return {
        "manifest": manifest,
        "line_number": line_number,
        "status": "error" if error else "ok",
        "error": error,
        "candidate": row.uniq_id if row else "",
        "recording_hash": recording_hash(row.audio_filepath, row.offset, row.duration) if row else "",
        "audio_filepath": row.audio_filepath if row else "",
        "offset": row.offset if row else 0.0,
        "slice_duration": row.duration if row and row.duration is not None else math.nan,
        "num_speakers": (row.num_speakers or 0) if row else 0,
        "manifest_row": json.dumps(row.to_json(), ensure_ascii=False) if row else "",
        "uniq_id": "",
        "row_key": "",
        "recorded": False,
    }


def encoding_problem(head: bytes, manifest: str) -> str:
    """Why a manifest starting with `head` cannot be read as UTF-8 JSON Lines ("" when it can)."""
    for bom, encoding in _ENCODINGS_BY_BOM.items():
        if head.startswith(bom):
            return f"{manifest}: the manifest is {encoding} (byte order mark {bom.hex(' ')}); save it as UTF-8"
    for magic, kind in [*_AUDIO_MAGIC.items(), (head[:4] + b"ftyp", "MP4/M4A")]:  # MP4's box type is at byte 4
        if head.startswith(magic):
            return (
                f"{manifest}: this is {kind} audio, not a manifest; write a manifest for the audio with "
                "python -m pipeline manifest"
            )
    for magic, suffix in _COMPRESSION_MAGIC.items():
        if head.startswith(magic):
            return (
                f"{manifest}: the manifest is compressed ({suffix}) but its name does not say so; "
                f"name it *.jsonl{suffix}"
            )
    if b"\x00" in head[:4096]:
        even_nuls = head[0:4096:2].count(0) > head[1:4096:2].count(0)
        return (
            f"{manifest}: the manifest looks like {'UTF-16-BE' if even_nuls else 'UTF-16-LE'} (NUL bytes); "
            "save it as UTF-8"
        )
    return ""


def parse_manifest_line(raw: bytes, manifest: str, number: int) -> dict[str, Any] | None:
    """One line to an input item (None for a blank line); a bad line is an error item."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return input_item(
            manifest,
            number,
            error=f"{manifest}:{number}: not valid UTF-8 ({error.reason} at byte "
            f"{error.start}); save the manifest as UTF-8",
        )
    try:
        row = parse_line(text, manifest, number)
    except ManifestError as error:
        return input_item(manifest, number, error=str(error))
    return None if row is None else input_item(manifest, number, row)


def with_local_audio_checked(item: dict[str, Any]) -> dict[str, Any]:
    """An ok row whose audio is a local file that is not there becomes, in the read task, the error
    row decoding would make of it: it then travels with the input's other error rows, thousands to a
    part, instead of a model batch at a time through decoding (a manifest of a million missing files
    made 2,000 parts). Remote audio (s3://, gs://) is left to decoding: a metadata request per
    object here would add one to every good row."""
    path = item["audio_filepath"]
    if item["status"] == OK and is_local(path) and not os.path.exists(path.removeprefix("file://")):
        return {**item, "status": ERROR, "error": f"audio file not found: {path}"}
    return item


def iter_lines(f) -> Iterator[bytes]:
    """Lines of a binary stream (without their ends), read in chunks."""
    rest = b""
    while chunk := f.read(READ_CHUNK_BYTES):
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        yield from lines
    if rest:
        yield rest


def manifest_items(f, manifest: str) -> Iterator[dict[str, Any]]:
    """Every non-blank line of one manifest stream as an input item, in order."""
    lines = iter_lines(f)
    first = next(lines, None)
    if first is None:
        return
    if first.startswith(UTF8_BOM):
        first = first[len(UTF8_BOM) :]
    elif problem := encoding_problem(first, manifest):
        yield input_item(manifest, 1, error=problem)
        return
    for number, raw in enumerate([first], start=1):
        if (item := parse_manifest_line(raw.rstrip(b"\r"), manifest, number)) is not None:
            yield item
    for number, raw in enumerate(lines, start=2):
        if (item := parse_manifest_line(raw.rstrip(b"\r"), manifest, number)) is not None:
            yield item


class ManifestLines(FileBasedDatasource):
    """Ray Data source of manifest lines: each file is streamed by one read task (so line numbers
    are the file's), decompressed by its suffix (`.gz`, `.zst`, `.bz2`...), parsed on the worker."""

    def __init__(self, paths: list[str], uris: dict[str, str], fs):
        super().__init__(paths, filesystem=fs)
        self._uris = uris

    def _read_stream(self, f, path: str) -> Iterator[pa.Table]:
        manifest = self._uris.get(path, path)
        items = []
        for item in manifest_items(f, manifest):
            items.append(with_local_audio_checked(item))
            if len(items) == ROWS_PER_READ_BLOCK:
                yield pa.Table.from_pylist(items, schema=INPUT_SCHEMA)
                items = []
        if items:
            yield pa.Table.from_pylist(items, schema=INPUT_SCHEMA)


def read_inputs(manifests: Iterable[str], options: dict | None = None, expanded: bool = False):
    """A Ray dataset of every line of every manifest (schema `INPUT_SCHEMA`), read and parsed by Ray
    tasks. All manifests must live on one filesystem (one scheme and storage options). `expanded`:
    the URIs are `expand_manifests`' already."""
    import ray

    uris = list(manifests) if expanded else expand_manifests(manifests, options)
    fs, _ = filesystem(uris[0], options)
    paths = {filesystem(uri, options)[1]: uri for uri in uris}
    return ray.data.read_datasource(ManifestLines(list(paths), paths, fs))


# ------------------------------------------------------------------------------ ids and resume


def bucket_count(rows: int) -> int:
    """Buckets of the id pass: about 20,000 rows each, so a bucket fits any worker."""
    return max(1, min(4096, math.ceil(rows / 20_000)))


def group_of(item: dict[str, Any]) -> str:
    """Rows that must be decided together: one candidate id; a line with no row goes by its place."""
    return item["candidate"] or f"\0{item['manifest']}:{item['line_number']}"


def bucket_of(group: str, buckets: int) -> int:
    return int(sha1_hex(group)[:8], 16) % buckets


def with_bucket(batch: pa.Table, buckets: int) -> pa.Table:
    groups = [group_of(item) for item in batch.select(["candidate", "manifest", "line_number"]).to_pylist()]
    return batch.append_column("bucket", pa.array([bucket_of(g, buckets) for g in groups], pa.int64()))


def recorded_items(batch: pa.Table) -> pa.Table:
    """Rows of a previous run's `recordings` as input items flagged `recorded` (their candidate
    read back from the row they recorded), for `assign_ids`."""
    items = []
    for row in batch.to_pylist():
        candidate = json.loads(row["manifest_row"])["uniq_id"] if row["manifest_row"] else ""  # stored as parsed
        items.append(
            {
                **input_item(row["manifest"], row["line_number"], error="recorded"),
                "candidate": candidate,
                "uniq_id": row["uniq_id"] or "",
                "row_key": row["row_key"] or "",
                "recorded": True,
            }
        )
    return pa.Table.from_pylist(items, schema=INPUT_SCHEMA)


def assign_bucket(table: pa.Table) -> pa.Table:
    """Ids for the rows of one bucket (whole groups), dropping the inputs already recorded; the
    records no input matches any more come out as ORPHANs (`pipeline.corpus.status`)."""
    groups: dict[str, list[dict]] = {}
    for item in table.drop_columns(["bucket"]).to_pylist():
        groups.setdefault(group_of(item), []).append(item)
    todo = []
    for group, items in groups.items():
        recorded = {i["row_key"] or f"{i['manifest']}:{i['line_number']}": i["uniq_id"] for i in items if i["recorded"]}
        inputs = sorted((i for i in items if not i["recorded"]), key=lambda i: (i["manifest"], i["line_number"]))
        if not inputs:
            todo.extend({**i, "status": ORPHAN} for i in items)
            continue
        if not inputs[0]["candidate"]:  # lines with no row: done when their place was recorded
            todo.extend(i for i in inputs if f"{i['manifest']}:{i['line_number']}" not in recorded)
            places = {f"{i['manifest']}:{i['line_number']}" for i in inputs}
            todo.extend(
                {**i, "status": ORPHAN}
                for i in items
                if i["recorded"] and f"{i['manifest']}:{i['line_number']}" not in places
            )
            continue
        keys = row_keys([i["recording_hash"] for i in inputs])
        present = set(keys)
        todo.extend({**i, "status": ORPHAN} for i in items if i["recorded"] and i["row_key"] not in present)
        for item, key, uniq_id in zip(inputs, keys, assign_group_ids(group, keys, recorded)):
            if uniq_id is not None:
                todo.append({**item, "uniq_id": uniq_id, "row_key": key})
    return pa.Table.from_pylist(todo, schema=INPUT_SCHEMA)


# Ray 2.60's default shuffle starts aggregator actors: seconds per run before the first row moves,
# which a small corpus (and every resume) paid. Up to this many partitions, the pull-based sort
# shuffle of plain tasks does the same work in a fraction of a second; past it (over a million
# rows in the id pass), the default's actors scale better than partitions x blocks objects.
TASK_SHUFFLE_MAX_PARTITIONS = 64


# The sort shuffle's groupby (Ray 2.60) cuts every block it is given into as many pieces as there are
# blocks: a million rows read as 120 blocks made 14,400 pieces of ~38 KB, small enough for Ray to keep
# in the driver's own memory (620 MB of it, of which glibc returned little). Large corpora are
# coalesced first into `COALESCED_BLOCKS` blocks (1,024 pieces of ~1,000 rows at a million rows); ten
# blocks took the id pass of a million rows from 755 to 137 MB of driver and from 64 to 50 s.
COALESCE_FROM_ROWS = 100_000
COALESCED_BLOCKS = 32


def with_shuffle_for(dataset, partitions: int):
    """`dataset` set to shuffle (groupby, sort) as suits `partitions` output partitions."""
    if partitions <= TASK_SHUFFLE_MAX_PARTITIONS:
        from ray.data.context import ShuffleStrategy

        dataset.context.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    return dataset


def assign_ids(inputs, rows: int, recorded=None):
    """The input rows still to do, with unique ids (`pipeline.io.ids`): one Ray groupby over buckets of
    candidate ids, the rows of `recorded` (a previous run's `recordings`, on --resume) joined in."""
    buckets = bucket_count(rows)
    rows_in = inputs
    if recorded is not None:
        rows_in = inputs.union(recorded.map_batches(recorded_items, batch_format="pyarrow"))
    if rows >= COALESCE_FROM_ROWS:
        rows_in = rows_in.repartition(target_num_rows_per_block=math.ceil(rows / COALESCED_BLOCKS), strict=True)
    bucketed = with_shuffle_for(
        rows_in.map_batches(with_bucket, fn_kwargs={"buckets": buckets}, batch_format="pyarrow"), buckets
    )
    # One shuffle partition per bucket: Ray's default (200) costs seconds of tasks on a small corpus.
    return bucketed.groupby("bucket", num_partitions=buckets).map_groups(assign_bucket, batch_format="pyarrow")


def manifest_row(item: dict[str, Any]) -> ManifestRow:
    """The input's manifest row back from its item (the output manifest and scoring use it)."""
    record = json.loads(item["manifest_row"])
    known = {name: record.pop(name, None) for name in ManifestRow.__dataclass_fields__ if name != "extra"}
    return ManifestRow(**{**known, "uniq_id": item["uniq_id"]}, extra=record)


def recorded_manifest_rows(manifests: list[str], options: dict | None, recordings: list[dict]) -> list[ManifestRow]:
    """The rows of `manifests` that a run recorded as ok, with the ids it gave them (matched by
    candidate id and row key). Read on the driver: for scoring, whose references are per row anyway."""
    recorded = {}
    for r in recordings:
        if r["status"] == "ok" and r["manifest_row"]:
            recorded[(json.loads(r["manifest_row"])["uniq_id"], r["row_key"])] = r["uniq_id"]
    groups: dict[str, list[dict]] = {}
    for uri in expand_manifests(manifests, options):
        fs, path = filesystem(uri, options)
        with fs.open(path, "rb", compression="infer") as f:
            for item in manifest_items(f, uri):
                if item["status"] == "ok":
                    groups.setdefault(item["candidate"], []).append(item)
    rows = []
    for candidate, items in groups.items():
        items.sort(key=lambda i: (i["manifest"], i["line_number"]))
        for item, key in zip(items, row_keys([i["recording_hash"] for i in items])):
            if (candidate, key) in recorded:
                rows.append(manifest_row({**item, "uniq_id": recorded[(candidate, key)]}))
    return rows
