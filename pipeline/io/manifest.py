"""NeMo diarization manifests: the one place that parses rows, resolves paths and makes ids.

A manifest is JSON Lines, one recording (or a slice of one, by `offset`/`duration`) per line, with
NeMo's fields `audio_filepath, offset, duration, label, text, num_speakers, rttm_filepath,
uem_filepath` and an optional `uniq_id`. Relative paths resolve against the manifest's folder, which
may be local or a URI (`s3://bucket/dir/`).
"""

from __future__ import annotations

import json
import math
import os
import posixpath
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Iterator

import fsspec

from pipeline.errors import UsageError
from pipeline.io.ids import assign_group_ids, candidate_id, recording_hash, row_keys
from pipeline.io.storage import filesystem

MANIFEST_SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz", ".json.zst", ".jsonl.zst")
# What libsndfile decodes, and the containers FFmpeg decodes for it (`pipeline.io.audio`). Audio given
# where a manifest belongs is refused by name; `python -m pipeline manifest` lists these (a file neither
# decoder reads becomes an error row that says so, rather than a file silently left out).
AUDIO_SUFFIXES = (
    ".wav",
    ".flac",
    ".mp3",
    ".ogg",
    ".oga",
    ".opus",
    ".aif",
    ".aiff",
    ".au",
    ".sph",
    ".w64",
    ".rf64",
    ".caf",
    ".m4a",
    ".aac",
    ".webm",
    ".mp4",
    ".wma",
    ".amr",
)
_PATH_FIELDS = ("audio_filepath", "rttm_filepath", "uem_filepath", "ctm_filepath")
_KNOWN_FIELDS = {
    "audio_filepath",
    "offset",
    "duration",
    "label",
    "text",
    "num_speakers",
    "rttm_filepath",
    "uem_filepath",
    "ctm_filepath",
    "uniq_id",
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
    name = (
        posixpath.basename(audio_filepath.rstrip("/")) if is_uri(audio_filepath) else os.path.basename(audio_filepath)
    )
    return os.path.splitext(name)[0]


MAX_SECONDS = 7 * 24 * 3600.0  # an offset or duration beyond a week is a typo, not a recording
MAX_NUM_SPEAKERS = 1000


def _number(value: Any, name: str) -> float:
    """A JSON number (or numeric string) as a float; the error names the field."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{name}: expected a number, got {value!r}"[:200])
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise ValueError(f"{name}: could not convert {value!r}"[:200]) from None
    if not math.isfinite(number):
        raise ValueError(f"{name}: must be a finite number, got {value!r}"[:200])
    return number


def _seconds(value: Any, name: str) -> float | None:
    if value is None:
        return None
    number = _number(value, name)
    if not 0 <= number <= MAX_SECONDS:
        raise ValueError(f"{name}: must be between 0 and {MAX_SECONDS:.0f} seconds, got {value!r}"[:200])
    return number


def speaker_count(value: Any) -> int | None:
    if value is None:
        return None
    number = _number(value, "num_speakers")
    if number != int(number) or not 1 <= number <= MAX_NUM_SPEAKERS:
        raise ValueError(f"num_speakers: must be a whole number from 1 to {MAX_NUM_SPEAKERS}, got {value!r}"[:200])
    return int(number)


def check_uniq_id(text: Any) -> str:
    """A manifest's `uniq_id` or the audio's base name in the id alphabet (`pipeline.io.ids`)."""
    if isinstance(text, bool) or not isinstance(text, (str, int)):
        raise ValueError(f"uniq_id: expected a string, got {text!r}"[:200])
    try:
        return candidate_id(str(text))
    except ValueError as error:
        raise ValueError(f"uniq_id: {error}") from None


def parse_row(record: Any, base_dir: str = "") -> ManifestRow:
    """Validate one decoded JSON record; raises ValueError with a readable reason."""
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    audio = record.get("audio_filepath")
    if not isinstance(audio, str) or not audio.strip():
        raise ValueError("missing 'audio_filepath'")
    if "\x00" in audio:
        raise ValueError("'audio_filepath' contains a NUL character")
    offset = _seconds(record.get("offset"), "offset") or 0.0
    duration = _seconds(record.get("duration"), "duration")
    if duration == 0:
        raise ValueError(
            "duration: must be above 0 seconds (0 is a slice with no audio; leave it out for the whole file)"
        )
    num_speakers = speaker_count(record.get("num_speakers"))
    paths = {
        name: resolve_path(record[name], base_dir) if isinstance(record.get(name), str) and record[name] else None
        for name in _PATH_FIELDS
    }
    explicit = record.get("uniq_id")
    uniq_id = check_uniq_id(base_uniq_id(paths["audio_filepath"]) if explicit in (None, "") else explicit)
    return ManifestRow(
        audio_filepath=paths["audio_filepath"],
        uniq_id=uniq_id,
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
    with fsspec.open(path, "r", encoding="utf-8-sig", compression="infer", **storage_options) as f:
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


def assign_unique_ids(rows: list[ManifestRow]) -> list[ManifestRow]:
    """Ids unique over `rows` by the rules of `pipeline.io.ids` (the corpus run applies the same rules on
    Ray): rows sharing a candidate id get `<candidate>-<8 hex>`, exact repeats `-2`, `-3`... in order.
    NeMo silently overwrites such rows; here every input row keeps its own outputs."""
    groups: dict[str, list[ManifestRow]] = {}
    for row in rows:
        groups.setdefault(row.uniq_id, []).append(row)
    for candidate, group in groups.items():
        keys = row_keys([recording_hash(r.audio_filepath, r.offset, r.duration) for r in group])
        for row, uniq_id in zip(group, assign_group_ids(candidate, keys, {})):
            row.uniq_id = uniq_id
    return rows


def rows_from_paths(paths: Iterable[str]) -> list[ManifestRow]:
    """NeMo's `_input_audio_to_rttm_processing` rows for a plain list of audio paths."""
    return assign_unique_ids(
        [
            ManifestRow(audio_filepath=path, uniq_id=check_uniq_id(base_uniq_id(path)), offset=0.0, duration=None)
            for path in paths
        ]
    )


GLOB_CHARACTERS = "*?["


def is_audio_name(path: str) -> bool:
    return path.lower().endswith(AUDIO_SUFFIXES)


def not_a_manifest(what: str, audio: str) -> UsageError:
    """The line for audio given where a manifest belongs: what was given, and the command that writes a
    manifest for `audio`."""
    return UsageError(
        f"--manifest {what}; --manifest takes NeMo manifests (JSON Lines). Write one for the audio with: "
        f"python -m pipeline manifest '{audio}' --output manifest.jsonl"
    )


def expand_manifests(uris: Iterable[str], options: dict | None = None) -> list[str]:
    """Manifest URIs with globs expanded (sorted), a folder to the manifests in it (`*.jsonl`, `*.json`
    and their compressed names, sorted), local paths made absolute. A pattern that matches nothing, or a
    manifest that does not exist, is a FileNotFoundError naming it; audio, or a folder without a
    manifest, a UsageError naming `python -m pipeline manifest`, which writes one for it."""
    uris = list(uris)
    named_audio = [uri for uri in uris if is_audio_name(uri)]
    if len(named_audio) > 1:  # a shell's unquoted `--manifest calls/*.wav`: the manifest is of their folder
        folder = posixpath.dirname(os.path.commonprefix([posixpath.dirname(uri) + "/" for uri in named_audio]))
        given = f"got {len(named_audio)} audio files among {len(uris)} URIs (a shell's unquoted glob?)"
        raise not_a_manifest(given, folder or ".")
    expanded: list[str] = []
    for uri in uris:
        fs, pattern = filesystem(uri, options)
        if any(c in uri for c in GLOB_CHARACTERS):
            matches = sorted(fs.glob(pattern))
            if not matches:
                raise FileNotFoundError(f"no manifest matches {uri}")
        elif fs.isfile(pattern):  # first: one request for a manifest on object storage, as before folders
            matches = [pattern]
        elif fs.isdir(pattern):
            matches = sorted(m for m in fs.ls(pattern, detail=False) if m.lower().endswith(MANIFEST_SUFFIXES))
            if not matches:
                raise not_a_manifest(f"{uri}: a folder with no manifest (*.jsonl) in it", uri)
        else:
            raise FileNotFoundError(f"manifest not found: {uri}")
        audio = [m for m in matches if is_audio_name(m)]
        if audio:
            raise not_a_manifest(f"{uri}: {posixpath.basename(audio[0])} is audio", uri)
        expanded.extend(os.path.abspath(m) if "://" not in uri else fs.unstrip_protocol(m) for m in matches)
    return expanded
