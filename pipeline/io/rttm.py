"""RTTM and UEM files: the one reader and writer of NIST speaker-turn files in the project.

RTTM fields are whitespace-separated, so an id or speaker label containing whitespace would produce a
line no tool can parse (NeMo writes such lines, NeMo issue #8100). `rttm_field` maps every run of
whitespace to a single underscore; the mapping is applied on write only, UTF-8 is kept as is.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Iterable

import fsspec

_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Turn:
    """One speaker turn: `start` and `end` in seconds on the recording's timeline."""

    start: float
    end: float
    speaker: str

    @property
    def duration(self) -> float:
        return self.end - self.start


def rttm_field(value: str) -> str:
    """Make `value` a single RTTM field: whitespace runs become `_`, an empty value becomes `<NA>`."""
    value = _WHITESPACE.sub("_", str(value).strip())
    return value or "<NA>"


def format_segment(start: float, end: float, speaker_index: int) -> str:
    """NeMo's segment string: `"begin end speaker_k"`, seconds with 3 decimals."""
    return f"{start:.3f} {end:.3f} speaker_{speaker_index}"


def parse_segment(segment: str) -> Turn:
    start, end, speaker = segment.split()
    return Turn(float(start), float(end), speaker)


def rttm_lines(uniq_id: str, turns: Iterable[Turn]) -> list[str]:
    file_id = rttm_field(uniq_id)
    return [
        f"SPEAKER {file_id} 1 {t.start:.3f} {t.duration:.3f} <NA> <NA> {rttm_field(t.speaker)} <NA> <NA>" for t in turns
    ]


def rttm_text(uniq_id: str, turns: Iterable[Turn]) -> str:
    lines = rttm_lines(uniq_id, turns)
    return "".join(line + "\n" for line in lines)


def write_rttm(path: str, uniq_id: str, turns: Iterable[Turn], **storage_options) -> None:
    with fsspec.open(path, "w", encoding="utf-8", **storage_options) as f:
        f.write(rttm_text(uniq_id, turns))


# The record types of NIST's RTTM (only SPEAKER lines are read); a line of any other kind means the
# file is not an RTTM (a path that points at something else would otherwise score as 0 speakers).
RTTM_TYPES = frozenset(
    "SEGMENT NOSCORE NO_RT_METADATA LEXEME NON-LEX NON-SPEECH FILLER EDIT IP SU CB A/P SPEAKER SPKR-INFO".split()
)


def parse_rttm(text: str) -> dict[str, list[Turn]]:
    """Turns per file id from RTTM text; other record types and `;;` comments are skipped, a line that
    is no RTTM record is a ValueError naming it."""
    turns: dict[str, list[Turn]] = {}
    for number, line in enumerate(io.StringIO(text), start=1):
        fields = line.split()
        if not fields or fields[0].startswith(";"):
            continue
        if fields[0] not in RTTM_TYPES:
            raise ValueError(f"not an RTTM file: line {number} is no RTTM record: {line.strip()[:60]!r}")
        if fields[0] != "SPEAKER":
            continue
        if len(fields) < 8:
            raise ValueError(f"RTTM line {number} has {len(fields)} fields, expected at least 8: {line!r}")
        start, duration = float(fields[3]), float(fields[4])
        turns.setdefault(fields[1], []).append(Turn(start, start + duration, fields[7]))
    return turns


def read_rttm(path: str, **storage_options) -> dict[str, list[Turn]]:
    with fsspec.open(path, "r", encoding="utf-8", **storage_options) as f:
        return parse_rttm(f.read())


def read_uem(path: str, **storage_options) -> dict[str, list[tuple[float, float]]]:
    """Scored regions per file id from a UEM file (`<id> <channel> <start> <end>` per line)."""
    regions: dict[str, list[tuple[float, float]]] = {}
    with fsspec.open(path, "r", encoding="utf-8", **storage_options) as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 4 and not fields[0].startswith(";"):
                regions.setdefault(fields[0], []).append((float(fields[2]), float(fields[3])))
    return regions
