"""A lease on a run's output folder: one run writes to an output at a time.

The lease is one small JSON file, `OUTPUT/_lease.json`, naming its holder (host, process id, start
time, run id) and the time of its last heartbeat. It is taken by an exclusive create, which fails
when the file exists, so of two runs started together exactly one gets it:

- local folders: `open(O_CREAT | O_EXCL)`; changes of an existing lease (heartbeat, takeover,
  release) are compare-and-swap under `flock`, so two `--resume` runs cannot both take over;
- S3 (and S3-compatible stores, moto included): a conditional PUT (`If-None-Match: *`); heartbeat,
  takeover and release are conditional on the ETag last seen (`If-Match`);
- other object stores (gs://, ...): exists-then-write, which narrows the window but is not atomic.

The holder rewrites the file every `heartbeat_seconds` from a daemon thread. A second run is refused
with one line naming the holder. `--resume` takes over a lease whose holder is gone: on the same
host, its process no longer exists; elsewhere, no heartbeat for `stale_after_seconds` (3 heartbeats).
The lease is released (deleted) when the run ends, by success, error, Ctrl-C or SIGTERM; a killed
(SIGKILL) run leaves it, and the next `--resume` takes it over. The run's writers commit a block only
while the lease names their run (`LeaseFence`): a killed run's Ray workers may outlive it."""

from __future__ import annotations

import datetime as dt
import errno
import json
import math
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from fsspec.implementations.local import LocalFileSystem

from pipeline.errors import RunFailed, UsageError
from pipeline.io.storage import filesystem

LEASE_NAME = "_lease.json"
HEARTBEAT_SECONDS = 10.0
STALE_AFTER_HEARTBEATS = 3


class OutputInUse(UsageError):
    """Another run holds the output's lease."""


class OutputNotWritable(UsageError):
    """The lease could not be written: the output (bucket, folder, permissions) is not usable."""


class LeaseLost(RunFailed):
    """The output's lease no longer names this run: another run took it over, so this one commits nothing more."""


@dataclass(frozen=True)
class LeaseFence:
    """What a run's writers check before they commit a block: that the output's lease still names the
    run (its `run_id`). A run killed with SIGKILL leaves Ray workers that can finish a write task
    after `--resume` took the lease over; unfenced, such a block would be committed beside the resumed
    run's block of the same lines (a line recorded twice).

    Locally the check holds a shared `flock` on the lease while the commit record is written, and a
    takeover takes the exclusive one (`LocalLeaseFile`), so a commit lands either before the takeover
    (the resumed run then reads it as recorded) or not at all. Object stores have no lock: the lease is
    read just before the commit record is written, which leaves a window of one PUT."""

    output: str
    storage_options: dict | None
    run_id: str

    def check(self) -> None:
        with self.held():
            pass

    @contextmanager
    def held(self) -> Iterator[None]:
        fs, root = filesystem(self.output, self.storage_options)
        path = root.rstrip("/") + "/" + LEASE_NAME
        if not isinstance(fs, LocalFileSystem):
            current = lease_store(fs, path).read()
            self._refuse_unless_ours(decode(current[0]) if current else None)
            yield
            return
        import fcntl

        try:
            f = open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb")
        except FileNotFoundError:
            self._refuse_unless_ours(None)
        with f:
            fcntl.flock(f, fcntl.LOCK_SH)
            try:
                same_file = os.fstat(f.fileno()).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same_file = False
            self._refuse_unless_ours(decode(f.read()) if same_file else None)
            yield

    def _refuse_unless_ours(self, holder: dict | None) -> None:
        if not holder or holder.get("run_id") != self.run_id:
            who = f"host {holder.get('host')}, pid {holder.get('pid')}" if holder else "no run"
            raise LeaseLost(
                f"the lease on {self.output} now names another run ({who}): this run's block is not committed; "
                "the run holding the lease labels its lines"
            )


class OutputLease:
    def __init__(
        self,
        output: str,
        storage_options: dict | None = None,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        stale_after_seconds: float | None = None,
    ):
        self.output = output.rstrip("/")
        self.store_options = storage_options
        fs, root = filesystem(self.output, storage_options)
        self.store = lease_store(fs, root.rstrip("/") + "/" + LEASE_NAME)
        self.heartbeat_seconds = heartbeat_seconds
        self.stale_after_seconds = stale_after_seconds or STALE_AFTER_HEARTBEATS * heartbeat_seconds
        self.holder = holder_record(heartbeat_seconds)
        self.token: Any = None
        self.lost_to: dict | None = None  # the record that replaced ours, when another run took over
        self.took_over: dict | None = None  # the gone holder this run replaced
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ taking and giving back

    def acquire(self, resume: bool = False) -> "OutputLease":
        """Take the lease, or raise `OutputInUse` naming its holder (`OutputNotWritable` when the
        output cannot be written at all). With `resume`, a lease whose holder is gone is taken over."""
        for _ in range(3):  # a lease released between our create and our read: try again
            try:
                self.token = self.store.create(encode(self.holder))
            except OSError as error:
                raise OutputNotWritable(
                    f"cannot write to the output {self.output}: {describe_os_error(error)}"
                ) from None
            if self.token is not None:
                break
            current = self.store.read()
            if current is None:
                continue
            data, token, modified = current
            holder = decode(data)
            if holder and holder.get("run_id") == self.holder["run_id"]:
                self.token = token  # our own create, whose reply was lost and retried (S3): it is ours
                break
            if resume and self.holder_is_gone(holder, modified):
                self.token = self.store.replace(encode(self.holder), token)
                if self.token is not None:
                    self.took_over = holder or {}
                    break
                continue
            raise OutputInUse(self.refusal(holder, modified, resume))
        else:
            raise OutputInUse(
                f"{self.output} is in use by another run (its lease {LEASE_NAME} keeps changing); try again"
            )
        self._thread = threading.Thread(target=self._beat, name="output-lease-heartbeat", daemon=True)
        self._thread.start()
        return self

    def fence(self) -> LeaseFence:
        """What this run's writers check before each commit (see `LeaseFence`)."""
        return LeaseFence(self.output, self.store_options, self.holder["run_id"])

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.token is not None and self.lost_to is None:
            try:
                self.store.delete(self.token)
            except OSError:
                pass  # a lease left behind is taken over by the next --resume
            self.token = None

    def __enter__(self) -> "OutputLease":
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

    # ------------------------------------------------------------------ heartbeat and staleness

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            self.holder = {**self.holder, "heartbeat": time.time()}
            try:
                token = self.store.replace(encode(self.holder), self.token)
            except OSError:
                continue  # a transient storage error: the next beat tries again
            if token is None:
                current = self.store.read()
                record = decode(current[0]) if current else None
                if record == self.holder:  # our own write, whose reply was lost and retried (S3)
                    self.token = current[1]
                    continue
                self.lost_to = record or {}
                return
            self.token = token

    def last_heartbeat(self, holder: dict | None, modified: float | None) -> float | None:
        """When the holder last showed life: its heartbeat when that is a time this clock can believe
        (a number, not further ahead than the stale window: clocks of two hosts differ a little),
        else when the lease was last written (the store's clock); None when neither is known."""
        beat = (holder or {}).get("heartbeat")
        now = time.time()
        if isinstance(beat, (int, float)) and not isinstance(beat, bool) and math.isfinite(beat):
            if beat <= now + self.stale_after_seconds:
                return float(beat)
        return float(modified) if modified is not None and modified <= now + self.stale_after_seconds else None

    def holder_is_gone(self, holder: dict | None, modified: float | None) -> bool:
        """On this host: its process has ended. Anywhere: no heartbeat for `stale_after_seconds`. A
        lease that is unreadable or has no believable time is gone (`--resume` takes it over)."""
        if (
            holder
            and holder.get("host") == socket.gethostname()
            and not process_alive(holder.get("pid"), holder.get("pid_started"))
        ):
            return True
        last = self.last_heartbeat(holder, modified)
        return last is None or time.time() - last > self.stale_after_seconds

    def refuse_if_held(self, reader: str | None = None, resume: bool = False) -> None:
        """`OutputInUse` when the lease would refuse this run (a live holder; a gone one without
        `resume`), as `acquire` would, without writing: the CLI's check before Ray and torch load.
        A `reader` (`export`) is refused by a live holder only: it would read half a run."""
        found = self.store.read()
        if found is None:
            return
        data, _, modified = found
        holder = decode(data)
        gone = self.holder_is_gone(holder, modified)
        if reader is not None and not gone:
            in_use = self.refusal(holder, modified, resume=False).split(";")[0]
            raise OutputInUse(f"{in_use}; {reader} once it has ended (or use a finished output)")
        if reader is None and not (gone and resume):
            raise OutputInUse(self.refusal(holder, modified, resume))

    def refusal(self, holder: dict | None, modified: float | None, resume: bool) -> str:
        last = self.last_heartbeat(holder, modified)
        age = f"{time.time() - last:.0f} s ago" if last is not None else "unknown"
        if holder is None:
            who = f"its {LEASE_NAME} is not a lease this version can read"
        else:
            who = f"host {holder.get('host', '?')}, pid {holder.get('pid', '?')}, started {holder.get('started', '?')}"
            if last is not None and holder.get("heartbeat") != last:
                who += f", heartbeat {str(holder.get('heartbeat'))[:40]!r} unusable"
        if self.holder_is_gone(holder, modified):
            return (
                f"{self.output} is leased by a run that appears gone ({who}, last heartbeat {age}); "
                "rerun with --resume to take it over"
            )
        return (
            f"{self.output} is in use by another run ({who}, last heartbeat {age}); wait for it to end or use "
            f"another --output (--resume takes over only once that run is gone: "
            f"no heartbeat for {self.stale_after_seconds:.0f} s)"
        )


def holder_record(heartbeat_seconds: float) -> dict[str, Any]:
    now = time.time()
    return {
        "run_id": uuid.uuid4().hex,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "pid_started": process_start_time(os.getpid()),
        "started": dt.datetime.fromtimestamp(now, dt.timezone.utc).isoformat(timespec="seconds"),
        "heartbeat": now,
        "heartbeat_seconds": heartbeat_seconds,
    }


def process_start_time(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def process_alive(pid: Any, started: Any) -> bool:
    """Whether process `pid` of this host still runs (and is the same process: pids are reused)."""
    if not isinstance(pid, int):
        return True  # unknown: leave it to the heartbeat
    now_started = process_start_time(pid)
    if now_started is None:
        return False
    return started is None or abs(now_started - float(started)) < 1.0


def encode(record: dict) -> bytes:
    return (json.dumps(record, indent=1) + "\n").encode("utf-8")


def decode(data: bytes) -> dict | None:
    """The holder record, or None while a lease is being written (or is not ours to read)."""
    try:
        record = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def describe_os_error(error: OSError) -> str:
    text = str(error).strip() or type(error).__name__
    return text if isinstance(error, (FileNotFoundError, PermissionError)) else f"{type(error).__name__}: {text}"


# ---------------------------------------------------------------------- where the lease lives


def lease_store(fs, path: str):
    if isinstance(fs, LocalFileSystem):
        if os.path.islink(path):  # a lease written through a link would overwrite what it points at
            raise OutputNotWritable(
                f"{path} is a symbolic link (to {os.readlink(path)}); an output's control files are never "
                "followed through links: remove it, or choose another --output"
            )
        return LocalLeaseFile(path)
    if "s3" in (fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)):
        return S3LeaseObject(fs, path)
    return FsspecLeaseFile(fs, path)


class LocalLeaseFile:
    """Exclusive create with O_EXCL; compare-and-swap under an exclusive `flock` of the lease file
    (the token is the content last written or read)."""

    def __init__(self, path: str):
        self.path = path

    def create(self, data: bytes) -> bytes | None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o644)
        except FileExistsError:
            return None
        try:
            os.write(fd, data)
            os.fsync(fd)
        except BaseException:  # a full disk: leave no empty lease behind
            os.close(fd)
            os.unlink(self.path)
            raise
        os.close(fd)
        return data

    def read(self) -> tuple[bytes, bytes, float] | None:
        try:
            with open(os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as f:
                data = f.read()
                return data, data, os.fstat(f.fileno()).st_mtime
        except FileNotFoundError:
            return None

    def replace(self, data: bytes, expected: bytes) -> bytes | None:
        return data if self._locked_swap(expected, data) else None

    def delete(self, expected: bytes) -> None:
        self._locked_swap(expected, None)

    def _locked_swap(self, expected: bytes, data: bytes | None) -> bool:
        import fcntl

        try:
            f = open(os.open(self.path, os.O_RDWR | os.O_NOFOLLOW), "r+b")
        except FileNotFoundError:
            return False
        with f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                if os.fstat(f.fileno()).st_ino != os.stat(self.path).st_ino:
                    return False  # deleted (and maybe recreated) while we waited for the lock
            except FileNotFoundError:
                return False
            if f.read() != expected:
                return False
            if data is None:
                os.unlink(self.path)
            else:
                f.seek(0)
                f.truncate()
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            return True


class S3LeaseObject:
    """Conditional writes of S3 (If-None-Match: * to create, If-Match: <ETag> to change or delete);
    the token is the object's ETag."""

    def __init__(self, fs, path: str):
        self.fs = fs
        self.bucket, self.key, _ = fs.split_path(path)

    def _call(self, method: str, **kwargs):
        return self.fs.call_s3(method, Bucket=self.bucket, Key=self.key, **kwargs)

    def create(self, data: bytes) -> str | None:
        return self._conditional_put(data, IfNoneMatch="*")

    def read(self) -> tuple[bytes, str, float] | None:
        try:
            response = self._call("get_object")
        except FileNotFoundError:
            return None
        return _read_body(self.fs, response["Body"]), response["ETag"], response["LastModified"].timestamp()

    def replace(self, data: bytes, etag: str) -> str | None:
        return self._conditional_put(data, IfMatch=etag)

    def delete(self, etag: str) -> None:
        try:
            self._call("delete_object", IfMatch=etag)
        except (FileNotFoundError, OSError):
            pass

    def _conditional_put(self, data: bytes, **condition) -> str | None:
        try:
            response = self._call("put_object", Body=data, **condition)
        except (FileExistsError, FileNotFoundError) as error:
            if _precondition_failed(error) or (
                condition.get("IfMatch") and isinstance(error, FileNotFoundError) and "NoSuchKey" in str(error)
            ):
                return None
            raise
        except OSError as error:
            if _precondition_failed(error):
                return None
            raise
        self.fs.invalidate_cache()
        return response["ETag"]


def _precondition_failed(error: BaseException) -> bool:
    text = f"{error} {getattr(error, '__cause__', '')}"
    return "PreconditionFailed" in text or "412" in text or getattr(error, "errno", None) == errno.EEXIST


def _read_body(fs, body) -> bytes:
    from fsspec.asyn import sync

    async def read():
        async with body as stream:
            return await stream.read()

    return sync(fs.loop, read)


class FsspecLeaseFile:
    """Any other fsspec store: exists-then-write; not atomic (documented in the module)."""

    def __init__(self, fs, path: str):
        self.fs, self.path = fs, path

    def create(self, data: bytes) -> bytes | None:
        self.fs.invalidate_cache()
        if self.fs.exists(self.path):
            return None
        self.fs.pipe_file(self.path, data)
        return data

    def read(self) -> tuple[bytes, bytes, float] | None:
        self.fs.invalidate_cache()
        try:
            data = self.fs.cat_file(self.path)
        except FileNotFoundError:
            return None
        return data, data, None

    def replace(self, data: bytes, expected: bytes) -> bytes | None:
        current = self.read()
        if current is None or current[0] != expected:
            return None
        self.fs.pipe_file(self.path, data)
        return data

    def delete(self, expected: bytes) -> None:
        current = self.read()
        if current is not None and current[0] == expected:
            self.fs.rm(self.path)
