"""NeMo diarization manifests: the one place that parses rows, resolves paths and makes ids.

A manifest is JSON Lines, one recording (or a slice of one, by `offset`/`duration`) per line, with
NeMo's fields `audio_filepath, offset, duration, label, text, num_speakers, rttm_filepath,
uem_filepath` and an optional `uniq_id`. Relative paths resolve against the manifest's folder, which
may be local or a URI (`s3://bucket/dir/`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import posixpath
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Iterator

import fsspec

MANIFEST_SUFFIXES = (".json", ".jsonl")
_PATH_FIELDS = ("audio_filepath", "rttm_filepath", "uem_filepath", "ctm_filepath")
_KNOWN_FIELDS = {
    "audio_filepath", "offset", "duration", "label", "text", "num_speakers",
    "rttm_filepath", "uem_filepath", "ctm_filepath", "uniq_id",
}


class ManifestError(ValueError):
    """A manifest line that cannot be used; names the manifest and the line."""

    def __init__(self, manifest: str, line_number: int, reason: str):
        super().__init__(f"{manifest}:{line_number}: {reason}")
        self.manifest = manifest
        self.line_number = line_number
        self.reason = reason


@dataclass
class ManifestRow:
    audio_filepath: str
    uniq_id: str
    offset: float = 0.0
    duration: float | None = None
    label: str = "infer"
    text: str = "-"
    num_speakers: int | None = None
    rttm_filepath: str | None = None
    uem_filepath: str | None = None
    ctm_filepath: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The row as NeMo writes it (extra fields kept, `None` fields kept as null)."""
        row = asdict(self)
        extra = row.pop("extra")
        return {**row, **extra}


def is_uri(path: str) -> bool:
    return "://" in path


def resolve_path(path: str, base_dir: str) -> str:
    """`path` as written in a manifest, made absolute against the manifest's folder."""
    if is_uri(path) or os.path.isabs(path) or not base_dir:
        return path
    if is_uri(base_dir):
        return posixpath.join(base_dir, path)
    return os.path.join(base_dir, path)


def manifest_dir(manifest_path: str) -> str:
    if is_uri(manifest_path):
        return posixpath.dirname(manifest_path)
    return os.path.dirname(os.path.abspath(manifest_path))


def base_uniq_id(audio_filepath: str) -> str:
    """NeMo's id: the audio file's base name without its extension."""
    name = posixpath.basename(audio_filepath.rstrip("/")) if is_uri(audio_filepath) else os.path.basename(audio_filepath)
    return os.path.splitext(name)[0]


MAX_ID_LENGTH = 200  # leaves room for the disambiguation suffix and ".rttm" within a 255-byte file name


def check_uniq_id(uniq_id: str) -> str:
    """Ids name output files (`rttm/<uniq_id>.rttm`), so one that could leave the output folder or
    that no file system accepts is rejected with the reason."""
    if not uniq_id.strip():
        raise ValueError("empty uniq_id")
    if any(c in uniq_id for c in "/\\\x00") or uniq_id in (".", "..") or uniq_id.startswith("."):
        raise ValueError(f"uniq_id {uniq_id[:80]!r} contains a path separator, NUL or a leading dot")
    if len(uniq_id.encode("utf-8")) > MAX_ID_LENGTH:
        raise ValueError(f"uniq_id is longer than {MAX_ID_LENGTH} bytes: {uniq_id[:40]!r}...")
    return uniq_id


def _optional_float(value: Any, name: str) -> float | None:
    if value is None:
        return None
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return number


def parse_row(record: Any, base_dir: str = "") -> ManifestRow:
    """Validate one decoded JSON record; raises ValueError with a readable reason."""
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    audio = record.get("audio_filepath")
    if not isinstance(audio, str) or not audio.strip():
        raise ValueError("missing 'audio_filepath'")
    if "\x00" in audio:
        raise ValueError("'audio_filepath' contains a NUL character")
    offset = _optional_float(record.get("offset"), "offset") or 0.0
    duration = _optional_float(record.get("duration"), "duration")
    num_speakers = record.get("num_speakers")
    if num_speakers is not None:
        if isinstance(num_speakers, bool) or float(num_speakers) != int(float(num_speakers)) or int(float(num_speakers)) < 1:
            raise ValueError(f"num_speakers must be a positive integer, got {num_speakers!r}")
        num_speakers = int(float(num_speakers))
    paths = {
        name: resolve_path(record[name], base_dir) if isinstance(record.get(name), str) and record[name] else None
        for name in _PATH_FIELDS
    }
    uniq_id = check_uniq_id(str(record.get("uniq_id") or base_uniq_id(paths["audio_filepath"])))
    return ManifestRow(
        audio_filepath=paths["audio_filepath"],
        uniq_id=str(uniq_id),
        offset=offset,
        duration=duration,
        label=str(record.get("label", "infer")),
        text=str(record.get("text", "-")),
        num_speakers=num_speakers,
        rttm_filepath=paths["rttm_filepath"],
        uem_filepath=paths["uem_filepath"],
        ctm_filepath=paths["ctm_filepath"],
        extra={k: v for k, v in record.items() if k not in _KNOWN_FIELDS},
    )


def parse_line(line: str, manifest: str, line_number: int, base_dir: str | None = None) -> ManifestRow | None:
    """One manifest line to a row (None for a blank line); raises ManifestError."""
    if not line.strip():
        return None
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise ManifestError(manifest, line_number, f"invalid JSON: {error.msg} at column {error.colno}") from None
    try:
        return parse_row(record, manifest_dir(manifest) if base_dir is None else base_dir)
    except (ValueError, TypeError) as error:
        raise ManifestError(manifest, line_number, str(error)) from None


def iter_manifest(path: str, **storage_options) -> Iterator[ManifestRow]:
    """Rows of a manifest, in order; the first bad line raises ManifestError."""
    with fsspec.open(path, "r", encoding="utf-8", **storage_options) as f:
        for number, line in enumerate(f, start=1):
            row = parse_line(line, path, number)
            if row is not None:
                yield row


def read_manifest(path: str, **storage_options) -> list[ManifestRow]:
    return assign_unique_ids(list(iter_manifest(path, **storage_options)))


def write_manifest(path: str, rows: Iterable[ManifestRow | dict], **storage_options) -> None:
    with fsspec.open(path, "w", encoding="utf-8", **storage_options) as f:
        for row in rows:
            record = row.to_json() if isinstance(row, ManifestRow) else row
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def recording_key(row: ManifestRow) -> str:
    """What makes a row a distinct recording: its audio and the slice of it."""
    return f"{row.audio_filepath}|{row.offset:.6f}|{row.duration if row.duration is not None else ''}"


def disambiguated_id(row: ManifestRow) -> str:
    digest = hashlib.sha1(recording_key(row).encode("utf-8")).hexdigest()[:8]
    return f"{row.uniq_id}-{digest}"


def assign_unique_ids(rows: list[ManifestRow]) -> list[ManifestRow]:
    """Give rows that share an id (same base name in different folders, several slices of one file,
    or one row repeated) the id `<base>-<8 hex digits of sha1(audio_filepath|offset|duration)>`,
    and repeats of the very same recording a further `-2`, `-3`... in input order.

    NeMo silently overwrites such rows; here every input row keeps its own outputs, and the suffix
    depends only on the row (and, for exact repeats, its rank), so reruns give the same ids."""
    counts = Counter(row.uniq_id for row in rows)
    seen: Counter = Counter()
    for row in rows:
        if counts[row.uniq_id] > 1:
            row.uniq_id = disambiguated_id(row)
            seen[row.uniq_id] += 1
            if seen[row.uniq_id] > 1:
                row.uniq_id = f"{row.uniq_id}-{seen[row.uniq_id]}"
    return rows


def rows_from_paths(paths: Iterable[str]) -> list[ManifestRow]:
    """NeMo's `_input_audio_to_rttm_processing` rows for a plain list of audio paths."""
    return assign_unique_ids([
        ManifestRow(audio_filepath=path, uniq_id=base_uniq_id(path), offset=0.0, duration=None)
        for path in paths
    ])
