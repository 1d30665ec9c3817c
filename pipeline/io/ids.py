"""Recording ids: the one place that says which characters an id may hold and how rows that would
share an id are told apart.

An id names `rttm/<id>.rttm` on every filesystem fsspec supports, the object key of that file, and
the file-id field of its RTTM lines, so it must be one literal, distinct string in all three:

- Unicode is normalised to NFC (`café` typed as NFC or NFD is one id, as normalising tools see it).
- Kept as they are: letters, digits and combining marks of any script, and `- _ . + = @`.
- Anything else (whitespace, tab, newline, controls, bidi overrides such as U+202E, `/ \\ ? # % * [ ] : ~`
  quotes...) becomes `_`, a leading dot becomes `_`, and because two texts could then meet (`a b`
  and `a_b`), such an id also gets `~` + 8 hex digits of the SHA-1 of the NFC text. `~` is never
  kept, so an escaped id can never equal a kept one. (`?` matters on S3: s3fs reads `key?versionId=`
  as a version query, so `rec?versionId=1` would not be a literal key.)
- A candidate id (escaped) longer than `MAX_ID_BYTES` bytes of UTF-8 is refused.

Rows whose candidates are equal (one base name in two folders, slices of one file, a repeated row)
are disambiguated by `disambiguated_id`: `<candidate>-<8 hex of the row key>`, and the k-th exact
repeat of one slice `-k` on top. The row key (`row_key`) is the SHA-1 of the resolved
`audio_filepath|offset|duration`, plus `-k` for the k-th repeat: it is what identifies an input
across runs, whatever else the corpus holds.

The longest id is then 200 + 9 + 8 bytes (a repeat count up to 10^7), so `<id>.rttm` stays under
the 255-byte limit of file names."""

from __future__ import annotations

import hashlib
import unicodedata

MAX_ID_BYTES = 200
KEPT_PUNCTUATION = frozenset("-_.+=@")
ESCAPE_MARK = "~"
HASH_LENGTH = 8


def _kept(character: str) -> bool:
    category = unicodedata.category(character)
    return character in KEPT_PUNCTUATION or category[0] in "LN" or category in ("Mn", "Mc")


def sha1_hex(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def candidate_id(text: str) -> str:
    """`text` (a manifest's `uniq_id`, or the audio's base name) in the id alphabet; raises ValueError
    when nothing usable is left or the id is too long."""
    normal = unicodedata.normalize("NFC", str(text))
    if not normal.strip():
        raise ValueError("empty uniq_id")
    kept = "".join(c if _kept(c) else "_" for c in normal)
    if kept.startswith("."):
        kept = "_" + kept[1:]
    if kept != normal:
        kept = f"{kept}{ESCAPE_MARK}{sha1_hex(normal)[:HASH_LENGTH]}"
    if len(kept.encode("utf-8")) > MAX_ID_BYTES:
        raise ValueError(f"longer than {MAX_ID_BYTES} bytes: {kept[:40]!r}...")
    return kept


def recording_hash(audio_filepath: str, offset: float, duration: float | None) -> str:
    """What makes a row a distinct recording: its resolved audio and the slice of it."""
    return sha1_hex(f"{audio_filepath}|{offset:.6f}|{duration if duration is not None else ''}")


def row_keys(hashes: list[str]) -> list[str]:
    """Row keys of rows in input order: the recording hash, and `<hash>-k` for its k-th repeat."""
    seen: dict[str, int] = {}
    keys = []
    for digest in hashes:
        seen[digest] = seen.get(digest, 0) + 1
        keys.append(digest if seen[digest] == 1 else f"{digest}-{seen[digest]}")
    return keys


def disambiguated_id(candidate: str, row_key: str) -> str:
    digest, _, repeat = row_key.partition("-")
    return f"{candidate}-{digest[:HASH_LENGTH]}" + (f"-{repeat}" if repeat else "")


def assign_group_ids(candidate: str, keys: list[str], recorded: dict[str, str]) -> list[str | None]:
    """Ids of the rows (by row key, input order) that share `candidate`, given the ids already
    recorded for that candidate (row key -> id). A row already recorded gets None (done: it keeps
    its recorded id and is not labelled again). The candidate itself is used only when one row has
    it and nothing was recorded under it, so an id in an output never changes when the corpus grows."""
    alone = len(keys) == 1 and not recorded
    return [None if key in recorded else candidate if alone else disambiguated_id(candidate, key) for key in keys]
