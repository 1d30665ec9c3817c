"""The corpus's input rows: every line of every manifest becomes one `InputRow`, usable or not.

Ids are made on the driver, over the lines of all manifests together, because disambiguating a
shared base name (`manifest.assign_unique_ids`) needs every row that could share it. That is one
pass of small JSON lines, not audio; a Ray-side id pass can replace it when manifests outgrow the
driver's memory (about 1 KB per row)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

from ..manifest import ManifestError, ManifestRow, assign_unique_ids, parse_line
from .storage import filesystem, is_local

_GLOB_CHARACTERS = "*?["


@dataclass
class InputRow:
    """One manifest line: a parsed row, or the readable reason it cannot be used."""

    manifest: str
    line_number: int
    row: ManifestRow | None = None
    error: str = ""

    @property
    def uniq_id(self) -> str:
        """The recording's id; "" for an error row."""
        return self.row.uniq_id if self.row is not None and not self.error else ""

    @property
    def resume_key(self) -> str:
        return resume_key(self.uniq_id, self.manifest, self.line_number)

    def to_item(self) -> dict[str, Any]:
        """The row as it enters the Ray plan: flat, typed columns with no nulls ("" and NaN instead),
        so that every block of the dataset has the same Arrow schema."""
        row = self.row
        return {
            "uniq_id": self.uniq_id,
            "audio_filepath": row.audio_filepath if row else "",
            "offset": row.offset if row else 0.0,
            "slice_duration": row.duration if row and row.duration is not None else math.nan,
            "num_speakers": (row.num_speakers or 0) if row else 0,
            "manifest": self.manifest,
            "line_number": self.line_number,
            "status": "error" if self.error else "ok",
            "error": self.error,
        }


def resume_key(uniq_id: str | None, manifest: str, line_number: int) -> str:
    """What identifies an input across runs: its id, or where it sits when it has none."""
    return uniq_id or f"{manifest}:{line_number}"


def expand_manifests(uris: Iterable[str], options: dict | None = None) -> list[str]:
    """Manifest URIs with globs expanded (sorted); a pattern that matches nothing is an error."""
    expanded: list[str] = []
    for uri in uris:
        if not any(c in uri for c in _GLOB_CHARACTERS):
            expanded.append(uri)
            continue
        fs, pattern = filesystem(uri, options)
        matches = sorted(fs.glob(pattern))
        if not matches:
            raise FileNotFoundError(f"no manifest matches {uri}")
        expanded.extend(match if is_local(uri) and "://" not in uri else fs.unstrip_protocol(match) for match in matches)
    return expanded


def read_manifest_lines(manifest: str, options: dict | None = None) -> list[InputRow]:
    """Every non-blank line of one manifest; a bad line is an error row naming manifest and line."""
    fs, path = filesystem(manifest, options)
    with fs.open(path, "rb") as f:
        raw_lines = f.read().splitlines()
    rows = []
    for number, raw in enumerate(raw_lines, start=1):
        try:
            row = parse_line(raw.decode("utf-8"), manifest, number)
        except UnicodeDecodeError as error:
            rows.append(InputRow(manifest, number, error=f"{manifest}:{number}: not valid UTF-8 ({error.reason} at byte {error.start})"))
            continue
        except ManifestError as error:
            rows.append(InputRow(manifest, number, error=str(error)))
            continue
        if row is not None:
            rows.append(InputRow(manifest, number, row))
    return rows


def read_input_rows(manifests: Iterable[str], options: dict | None = None) -> list[InputRow]:
    """All rows of all manifests, with ids unique over all of them (`manifest.assign_unique_ids`:
    a shared base name or a repeated row gets a deterministic suffix, so every line is labelled)."""
    rows = [row for manifest in expand_manifests(manifests, options) for row in read_manifest_lines(manifest, options)]
    assign_unique_ids([r.row for r in rows if r.row is not None])
    return rows
