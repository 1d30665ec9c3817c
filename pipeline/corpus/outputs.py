"""The output folder of a corpus run and how a rerun finds what is already done.

    rttm/<uniq_id>.rttm            one per ok recording
    segments/part-<token>.parquet  speaker turns of one written block
    speakers/part-<token>.parquet  one row per (recording, speaker) of that block, with its centroid
                                   (no part for a block without centroids)
    recordings/part-<token>.parquet  one row per input row of that block: the block's commit record
    manifest.jsonl, summary.json   written by the driver once the plan has finished
    speaker_links.parquet, global_speakers.parquet, global_rttm/, linking.json
                                   written by `link-speakers` (`pipeline.linking.run`)

A block's files are written RTTMs first, segments and speakers next, its recordings part last, each
atomically. So a recordings part means the block is complete; `--resume` skips the inputs it names,
deletes segments and speakers parts whose recordings part never came (a run killed mid-block), and
redoes the rest."""

from __future__ import annotations

import contextlib
import io
import math
import os
import posixpath
import re
import uuid
from typing import Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from pipeline.corpus.tables import RECORDINGS_SCHEMA, SEGMENTS_SCHEMA, speakers_schema
from pipeline.errors import OutputExists, RunFailed, UsageError
from pipeline.io.storage import filesystem, join

PART_PREFIX, PART_SUFFIX = "part-", ".parquet"
TEMPORARY_SUFFIX = ".tmp"
TEMPORARY_NAME = re.compile(
    r"^\.(.+\.)?[0-9a-f]{32}" + re.escape(TEMPORARY_SUFFIX) + "$"
)  # older runs named them .NAME.HEX.tmp
# What a run writes directly under OUTPUT.
DAMAGED_FOLDER = "damaged"  # where `--repair` sets the parts of a damaged block aside
RETRIED_FOLDER = "retried"  # where `--retry-errors` keeps the error records it replaces
OUTPUT_ENTRIES = (
    "rttm",
    "segments",
    "speakers",
    "recordings",
    "eval",
    "manifest.jsonl",
    "summary.json",
    "run_options.json",
    DAMAGED_FOLDER,
    RETRIED_FOLDER,
    "global_rttm",
    "speaker_links.parquet",
    "global_speakers.parquet",
    "linking.json",
)
# Tables whose parts count only once the block's recordings part (its commit record) exists.
BLOCK_TABLES = ("segments", "speakers")


class OutputWriteFailed(RunFailed):
    """The output cannot take more (disk full, quota, read-only): the run stops with one line."""


class DamagedOutput(UsageError):
    """A committed part cannot be read (truncated, overwritten): named, with the repair."""


# Ray Data's Parquet reader lists its files on a pool of footer-reading actors, one process each, 32
# unless `RAY_DATA_PARQUET_FOOTER_NUM_ACTORS` says otherwise (read when `read_parquet` is called), and
# hands them 10 footers at a time. A resume reads the run's own parts, whose number it knows: one actor
# per 10 parts, up to Ray's default, instead of 32 actors queued on a laptop's Ray for one part (a
# one-file resume: 4.7-7.2 against 7.3-9.4 CPU-seconds, `benchmarks/small_run_overhead.py --resume`).
FOOTER_READER_VARIABLE = "RAY_DATA_PARQUET_FOOTER_NUM_ACTORS"
FOOTERS_PER_READER, MOST_FOOTER_READERS = 10, 32


@contextlib.contextmanager
def footer_readers_for(parts: int):
    """Ray Data's footer-reader pool sized to `parts` files while a `read_parquet` is planned; a
    value the user set in the environment is left as it is."""
    if FOOTER_READER_VARIABLE in os.environ:
        yield
        return
    os.environ[FOOTER_READER_VARIABLE] = str(min(MOST_FOOTER_READERS, max(1, math.ceil(parts / FOOTERS_PER_READER))))
    try:
        yield
    finally:
        os.environ.pop(FOOTER_READER_VARIABLE, None)


class OutputLayout:
    def __init__(self, uri: str, storage_options: dict | None = None):
        self.uri = uri.rstrip("/")
        self.fs, self.root = filesystem(self.uri, storage_options)
        self.root = self.root.rstrip("/")

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def rttm_path(self, uniq_id: str) -> str:
        return self.path("rttm", f"{uniq_id}.rttm")

    def rttm_uri(self, uniq_id: str) -> str:
        """The RTTM's address as users see it (what `manifest.jsonl` points at)."""
        return join(self.uri, "rttm", f"{uniq_id}.rttm")

    @property
    def manifest_uri(self) -> str:
        return join(self.uri, "manifest.jsonl")

    def part_path(self, table: str, token: str) -> str:
        return self.path(table, f"{PART_PREFIX}{token}{PART_SUFFIX}")

    # ---------------------------------------------------------------- writing

    def write_atomically(self, path: str, data: bytes) -> None:
        """Readers see the whole file or none of it: a local file is written under a hidden temporary
        name and renamed; an object store PUT is already all-or-nothing."""
        if isinstance(self.fs, LocalFileSystem):
            directory, name = posixpath.split(path)
            os.makedirs(directory, exist_ok=True)
            # The temporary name does not repeat `name`: a 250-byte name must not become a 290-byte one.
            temporary = posixpath.join(directory, f".{uuid.uuid4().hex}{TEMPORARY_SUFFIX}")
            try:
                with open(temporary, "wb") as f:
                    f.write(data)
                os.replace(temporary, path)
            except BaseException as error:  # a full disk, a kill: no half-written temporary stays behind
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                if isinstance(error, OSError) and error.errno and not error.filename:
                    raise OSError(error.errno, os.strerror(error.errno), path) from error  # name the file
                raise
        else:
            self.fs.pipe_file(path, data)

    @contextlib.contextmanager
    def open_atomically(self, path: str):
        """A binary file to stream into, that readers see whole or not at all (as `write_atomically`)."""
        if isinstance(self.fs, LocalFileSystem):
            directory = posixpath.dirname(path)
            os.makedirs(directory, exist_ok=True)
            temporary = posixpath.join(directory, f".{uuid.uuid4().hex}{TEMPORARY_SUFFIX}")
            try:
                with open(temporary, "wb") as f:
                    yield f
                os.replace(temporary, path)
            finally:
                if os.path.exists(temporary):
                    os.remove(temporary)
        else:
            with self.fs.open(path, "wb") as f:  # a multipart upload completes only on close
                yield f

    def write_table(self, path: str, table: pa.Table) -> None:
        """`table` as one Parquet file at `path`, atomically."""
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        self.write_atomically(path, buffer.getvalue())

    def write_part(self, table_name: str, token: str, table: pa.Table) -> None:
        self.write_table(self.part_path(table_name, token), table)

    # ---------------------------------------------------------------- reading back

    def part_tokens(self, table_name: str) -> set[str]:
        self.fs.invalidate_cache()
        directory = self.path(table_name)
        if not self.fs.exists(directory):
            return set()
        names = (posixpath.basename(p) for p in self.fs.ls(directory, detail=False))
        return {
            n[len(PART_PREFIX) : -len(PART_SUFFIX)]
            for n in names
            if n.startswith(PART_PREFIX) and n.endswith(PART_SUFFIX)
        }

    def committed_tokens(self, table_name: str) -> list[str]:
        """The sorted tokens of the parts of `table_name` whose block committed (its recordings part exists)."""
        tokens = self.part_tokens(table_name)
        if table_name in BLOCK_TABLES:
            tokens &= self.part_tokens("recordings")
        return sorted(tokens)

    def committed_parts(self, table_name: str) -> list[str]:
        """The paths of the parts of `table_name` whose block committed."""
        return [self.part_path(table_name, token) for token in self.committed_tokens(table_name)]

    def read_table(self, table_name: str, columns: Iterable[str] | None = None) -> pa.Table:
        """All committed parts of `segments`, `speakers` or `recordings` (an empty table when there
        are none; `speakers` parts take the centroid size of the first part)."""
        paths = self.committed_parts(table_name)
        if table_name == "speakers":
            if not paths:
                schema = speakers_schema(0)
                return schema.empty_table().select(list(columns) if columns else schema.names)
            with self.fs.open(paths[0], "rb") as f:
                schema = pq.read_schema(f)
        else:
            schema = {"segments": SEGMENTS_SCHEMA, "recordings": RECORDINGS_SCHEMA}[table_name]
        if not paths:
            return schema.empty_table().select(list(columns) if columns else schema.names)
        try:
            dataset = pads.dataset(paths, schema=schema, format="parquet", filesystem=self.fs)
            return dataset.to_table(columns=list(columns) if columns else None)
        except (pa.ArrowInvalid, OSError):
            self.refuse_damaged()  # names the damaged part and the repair
            raise

    # ---------------------------------------------------------------- damage and repair

    def damaged_blocks(self) -> dict[str, str]:
        """Committed blocks with a part that cannot be read (its Parquet footer): token -> the first
        damaged part and why. One small read per part."""
        damaged: dict[str, str] = {}
        for table_name in ("recordings", *BLOCK_TABLES):
            for token in sorted(self.part_tokens(table_name)):
                if token in damaged:
                    continue
                path = self.part_path(table_name, token)
                try:
                    with self.fs.open(path, "rb") as f:
                        pq.ParquetFile(f).metadata  # noqa: B018 - reading the footer is the check
                except Exception as error:  # noqa: BLE001 - any unreadable part is damage to name
                    damaged[token] = f"{path}: {type(error).__name__}: {str(error).splitlines()[0][:120]}"
        return damaged

    def refuse_damaged(self) -> None:
        """`DamagedOutput` naming the first damaged part and the repair, when there is one."""
        damaged = self.damaged_blocks()
        if damaged:
            more = f" (and {len(damaged) - 1} more blocks)" if len(damaged) > 1 else ""
            raise DamagedOutput(
                f"{next(iter(damaged.values()))}{more}: a committed part is damaged; rerun with --resume --repair "
                f"to set its block aside (in {DAMAGED_FOLDER}/) and label its rows again"
            )

    def set_aside(self, tokens: Iterable[str], folder: str = DAMAGED_FOLDER) -> int:
        """Move every part of these blocks to `<folder>/<table>/`: their rows are no longer recorded,
        so a resumed run labels them again, once. Returns the parts moved."""
        moved = 0
        for token in tokens:
            for table_name in ("recordings", *BLOCK_TABLES):
                path = self.part_path(table_name, token)
                if self.fs.exists(path):
                    aside = self.path(folder, table_name, posixpath.basename(path))
                    self.fs.makedirs(posixpath.dirname(aside), exist_ok=True)
                    self.fs.mv(path, aside)
                    moved += 1
        return moved

    def retire_errors(self) -> int:
        """Take the error rows out of the records, so that a resumed run labels them again (once: a row
        is either recorded or to do). A block of errors only is set aside whole; a block that also holds
        ok rows gets its recordings part replaced, atomically and under the same token (its segments
        and speakers parts stay its own), by its ok rows; the error rows go to `retried/` first, so the
        reasons are kept. One part at a time on the driver. Returns the error rows retired."""
        from pipeline.corpus.status import ERROR

        retired = 0
        for token in sorted(self.part_tokens("recordings")):
            path = self.part_path("recordings", token)
            with self.fs.open(path, "rb") as f:
                status = pq.read_table(f, columns=["status"])["status"]
            errors = pc.equal(status, ERROR)
            count = pc.sum(errors.cast(pa.int64())).as_py() or 0
            if not count:
                continue
            retired += count
            if count == len(status):
                self.set_aside([token], RETRIED_FOLDER)
                continue
            with self.fs.open(path, "rb") as f:
                records = pq.read_table(f, schema=RECORDINGS_SCHEMA)
            self.write_table(self.path(RETRIED_FOLDER, "recordings", posixpath.basename(path)), records.filter(errors))
            self.write_table(path, records.filter(pc.invert(errors)))
        return retired

    def recorded_parts(self) -> list[str]:
        return [self.part_path("recordings", token) for token in sorted(self.part_tokens("recordings"))]

    def refuse_links(self) -> None:
        """Refuse an output whose own folders or files are symbolic links (a pre-created
        `OUTPUT/rttm -> /elsewhere` would send every RTTM outside the output)."""
        if not isinstance(self.fs, LocalFileSystem):
            return
        for name in OUTPUT_ENTRIES:
            entry = self.path(name)
            if os.path.islink(entry):
                raise UsageError(
                    f"{entry} is a symbolic link (to {os.readlink(entry)}); outputs are never written through links: "
                    "remove it or choose another --output"
                )

    def remove_temporaries(self) -> int:
        """Delete the temporaries a killed or failed run left (local outputs only: object stores
        have none); only the lease holder calls this, so none of them is being written."""
        if not isinstance(self.fs, LocalFileSystem) or not os.path.isdir(self.root):
            return 0
        removed = 0
        for folder in (self.root, *(self.path(name) for name in OUTPUT_ENTRIES)):
            if os.path.isdir(folder) and not os.path.islink(folder):
                for name in os.listdir(folder):
                    if TEMPORARY_NAME.match(name):
                        os.unlink(os.path.join(folder, name))
                        removed += 1
        return removed

    def recorded(self, columns: Iterable[str] | None = None, ok_only: bool = False):
        """The committed `recordings` rows as a Ray dataset (None when there are none): read by Ray
        tasks, so a resumed run of millions of rows never loads them on the driver. `ok_only`: without
        the error rows (what `--retry-errors` leaves recorded)."""
        import ray
        from ray.data.expressions import col

        from pipeline.corpus.status import OK

        parts = self.recorded_parts()
        if not parts:
            return None
        with footer_readers_for(len(parts)):
            recorded = ray.data.read_parquet(parts, filesystem=self.fs, schema=RECORDINGS_SCHEMA)
        recorded = recorded.filter(expr=col("status") == OK) if ok_only else recorded
        return recorded.select_columns(list(columns)) if columns else recorded

    def recorded_options(self) -> dict | None:
        """The labelling options of the run this output holds: `run_options.json` (written when a run
        starts), else the `config` of an older run's `summary.json`; None when neither is there."""
        import json

        for name, key in (("run_options.json", None), ("summary.json", "config")):
            path = self.path(name)
            if self.fs.exists(path):
                with self.fs.open(path, "rb") as f:
                    document = json.loads(f.read().decode("utf-8"))
                return document.get(key) if key else document
        return None

    def record_options(self, options: dict, replace: bool) -> None:
        """`run_options.json`: written when absent, or (`replace`) when no record was made under the old one."""
        import json

        if replace or not self.fs.exists(self.path("run_options.json")):
            self.write_atomically(self.path("run_options.json"), (json.dumps(options, indent=1) + "\n").encode("utf-8"))

    def check_fresh(self, resume: bool) -> bool:
        """Whether the folder already holds a run's records; refuses to mix runs without `resume`."""
        if not self.part_tokens("recordings") and not self.part_tokens("segments"):
            return False
        if not resume:
            raise OutputExists(
                f"{self.uri} already holds outputs of a run; pass --resume to complete it, "
                "or choose an empty output folder"
            )
        return True

    def prepare(self, resume: bool) -> bool:
        """Make the folder ready for a run: deletes segments and speakers parts whose block never
        committed; returns whether there are records a resumed run skips."""
        self.refuse_links()
        self.remove_temporaries()
        if not self.check_fresh(resume):
            return False
        self.remove_uncommitted_parts()
        return bool(self.part_tokens("recordings"))

    def remove_uncommitted_parts(self) -> None:
        """Delete segments and speakers parts whose block never committed (no recordings part): left
        by a killed run, or by a writer the lease fenced off. Only the lease holder calls this."""
        committed = self.part_tokens("recordings")
        for table_name in BLOCK_TABLES:
            for orphan in self.part_tokens(table_name) - committed:
                self.fs.rm(self.part_path(table_name, orphan))
