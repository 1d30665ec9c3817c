"""Checkpoints given as a path or a URI (`s3://bucket/models/diarizer/`): a model's factory gets a local
path. An object-store checkpoint (a file or a folder) is copied once per node into the cache
(`$CORPUS_DIARIZATION_CACHE/checkpoints`, else `~/.cache/corpus-diarization/checkpoints`), under a
name made of its URI, size and modification time, through a temporary folder renamed into place, so
that actors starting together on one node neither read a half copy nor copy it twice over."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from pipeline.errors import UsageError
from pipeline.io.storage import filesystem, is_local


def cache_root() -> Path:
    """The project's cache folder: `$CORPUS_DIARIZATION_CACHE`, else the user's cache folder."""
    if os.environ.get("CORPUS_DIARIZATION_CACHE"):
        return Path(os.environ["CORPUS_DIARIZATION_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "corpus-diarization"


def check_checkpoint_place(uri: str, storage_options: dict | None = None) -> Path | None:
    """Before Ray: the path of a local checkpoint (its model checks what is there), or None for an
    object-store URI that exists (`UsageError`, one line, when it does not or cannot be read)."""
    if is_local(uri):
        return Path(uri.removeprefix("file://")).expanduser()
    fs, remote = filesystem(uri, storage_options)
    try:
        found = fs.exists(remote)
    except Exception as error:  # noqa: BLE001 - credentials, endpoint, permissions: named in one line
        raise UsageError(f"cannot read the checkpoint {uri}: {type(error).__name__}: {error}") from None
    if not found:
        raise UsageError(f"checkpoint not found: {uri}")
    return None


def local_checkpoint(uri: str, storage_options: dict | None = None) -> Path:
    """A local path holding the checkpoint `uri` (itself when it is local); `UsageError` (one line)
    when there is nothing at `uri`."""
    if is_local(uri):
        path = Path(uri.removeprefix("file://")).expanduser()
        if not path.exists():
            raise UsageError(f"checkpoint not found: {uri}")
        return path
    fs, remote = filesystem(uri, storage_options)
    try:
        info = fs.info(remote)
    except FileNotFoundError:
        raise UsageError(f"checkpoint not found: {uri}") from None
    stamp = f"{uri} {info.get('size')} {info.get('LastModified') or info.get('mtime') or info.get('ETag')}"
    name = Path(remote.rstrip("/")).name or "checkpoint"
    target = cache_root() / "checkpoints" / hashlib.sha256(stamp.encode()).hexdigest()[:16] / name
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".copy-", dir=target.parent))
    try:
        if info.get("type") == "directory":
            fs.get(remote.rstrip("/") + "/", str(staging / name), recursive=True)
        else:
            fs.get(remote, str(staging / name))
        try:
            os.rename(staging / name, target)
        except OSError:  # another actor of this node renamed its copy first
            if not target.exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
