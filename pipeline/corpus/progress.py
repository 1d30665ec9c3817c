"""Progress of a corpus run, counted from the sink's commits.

The sink commits a block by writing its `recordings/` part last (`outputs.OutputLayout`), so the
parts that have appeared are exactly the recordings done. A driver thread lists that folder every
`poll` seconds and reads only the new parts (a few KB each), which works the same for a local
folder and for `s3://` and needs nothing from the Ray plan. Shown as a tqdm bar on a terminal, a
widget in Jupyter (`tqdm.auto`), or a plain line every `CONSOLE.progress_interval` seconds when the
output is a log (CI, `ray job logs`).

A block is committed after its whole batch is through the model, so a run of a few hour-long
recordings would show nothing for minutes. The model actors therefore tally the audio they have been
through (`ForwardTally`, fed by `report_forward_progress` within a forward) in Ray's key-value store,
under a key of the run's; the line's audio, rate and ETA count it before the commit does."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import uuid
from typing import TextIO

from fsspec.implementations.local import LocalFileSystem

from pipeline.console import CONSOLE, Ticker, counted, format_duration
from pipeline.corpus.outputs import OutputLayout


def in_notebook() -> bool:
    shell = sys.modules.get("IPython") and getattr(sys.modules["IPython"], "get_ipython", lambda: None)()
    return bool(shell) and type(shell).__name__ == "ZMQInteractiveShell"


def terminal_columns(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 0


KV_NAMESPACE = "corpus-diarization"
TALLY_EVERY_SECONDS = 1.0  # one small write to Ray's GCS a second per model actor, at most


class ForwardTally:
    """On a model actor: the rows it was handed and the audio it has been through, published under
    `key` + a name of its own in Ray's key-value store (at most every `TALLY_EVERY_SECONDS`, and after each
    batch). A run without a key, or a Ray without a store, publishes nothing."""

    def __init__(self, key: str | None):
        self.key = None if key is None else f"{key}{uuid.uuid4().hex}"  # a restarted actor: a tally of its own
        self.rows = 0
        self.seconds = self.forwarded = self.in_progress = 0.0
        self._last_publish = 0.0

    def handed(self, rows: int, seconds: float) -> None:
        self.rows += rows
        self.seconds += seconds

    def forwarding(self, seconds: float, done: float) -> None:
        """`done` (0-1) of a forward of `seconds` of audio."""
        self.in_progress = seconds * done
        if time.monotonic() - self._last_publish >= TALLY_EVERY_SECONDS:
            self.publish()

    def forward_finished(self, seconds: float) -> None:
        """A forward of `seconds` of audio returned."""
        self.forwarded += seconds
        self.in_progress = 0.0

    def publish(self) -> None:
        if self.key is None:
            return
        value = {"rows": self.rows, "seconds": self.seconds, "forwarded": self.forwarded + self.in_progress}
        # Ray's own key-value store (what Ray's libraries keep their state in) is not public API: a
        # Ray without it, or any failure, leaves the line to the commits; it never fails a batch.
        try:
            from ray.experimental import internal_kv

            if internal_kv._internal_kv_initialized():
                internal_kv._internal_kv_put(self.key, json.dumps(value), namespace=KV_NAMESPACE)
        except Exception:  # noqa: BLE001
            pass
        self._last_publish = time.monotonic()


def forward_tallies(key: str) -> dict[str, float]:
    """The model actors' tallies under `key`, summed: rows handed, their audio seconds, seconds forwarded."""
    from ray.experimental import internal_kv

    total = {"rows": 0.0, "seconds": 0.0, "forwarded": 0.0}
    if not internal_kv._internal_kv_initialized():
        return total
    for name in internal_kv._internal_kv_list(key, namespace=KV_NAMESPACE):
        value = internal_kv._internal_kv_get(name, namespace=KV_NAMESPACE)
        if value:
            for field, amount in json.loads(value).items():
                total[field] += amount
    return total


def forget_tallies(key: str) -> None:
    from ray.experimental import internal_kv

    if internal_kv._internal_kv_initialized():
        for name in internal_kv._internal_kv_list(key, namespace=KV_NAMESPACE):
            internal_kv._internal_kv_del(name, namespace=KV_NAMESPACE)


class CommitProgress:
    """Watches `layout`'s commits while the plan runs: `with CommitProgress(layout, total, done) as
    progress:`; the model actors tally under `progress.tally_key` (`ForwardTally`), and the
    `forward_rows` rows they are to be handed let the ETA count audio once all are handed."""

    def __init__(
        self,
        layout: OutputLayout,
        total: int,
        already_done: int = 0,
        poll: float | None = None,
        stream: TextIO | None = None,
        forward_rows: int = 0,
    ):
        self.layout = layout
        self.total = total
        self.already_done = already_done
        self.forward_rows = forward_rows
        self.tally_key = f"forwarded/{uuid.uuid4().hex}/"
        self.tally = {"rows": 0.0, "seconds": 0.0, "forwarded": 0.0}
        self._first_tally: tuple[float, float] | None = None  # (when, seconds forwarded) at the first one seen
        self.poll = poll if poll is not None else (1.0 if isinstance(layout.fs, LocalFileSystem) else 5.0)
        self.stream = stream or CONSOLE.out
        self.seen_tokens = layout.part_tokens("recordings")
        self.done = self.errors = 0
        self.audio_seconds = 0.0
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="corpus-progress", daemon=True)
        self._bar = None
        self._last_line = 0.0

    # ---------------------------------------------------------------- what is shown

    def audio_done(self) -> float:
        """Seconds of audio done this run: committed, or through the model if that is more."""
        return max(self.audio_seconds, self.tally["forwarded"])

    def rate(self) -> tuple[float, float]:
        """Recordings per second and audio seconds per wall second, this run."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return self.done / elapsed, self.audio_done() / elapsed

    def remaining(self) -> int:
        """Recordings of the run not yet committed."""
        return self.total - self.already_done - self.done

    def eta(self) -> float | None:
        """From the audio left once every row is in the model actors' hands (their audio is then
        known), else from the recordings committed."""
        remaining = self.remaining()
        per_second, _ = self.rate()
        forward_rate = self.forward_rate()
        if remaining and self.all_handed() and forward_rate:
            return max(self.tally["seconds"] - self.tally["forwarded"], 0.0) / forward_rate
        return remaining / per_second if per_second > 0 else None

    def all_handed(self) -> bool:
        """Every row to label is in the model actors' hands, so this run's audio is known."""
        return bool(self.forward_rows) and self.tally["rows"] >= self.forward_rows

    def forward_rate(self) -> float | None:
        """Audio seconds through the model per wall second since the first tally (Ray's and the
        model's start left out), None until it has moved."""
        if self._first_tally is None:
            return None
        when, forwarded = self._first_tally
        elapsed = time.monotonic() - when
        moved = self.tally["forwarded"] - forwarded
        return moved / elapsed if moved > 0 and elapsed > 0 else None

    def stats(self) -> str:
        _, audio_rate = self.rate()
        eta = self.eta()
        done = self.audio_done()
        audio = f"{done / 3600:.2f} h audio"
        if self.all_handed() and self.remaining() > 0:  # "0/3 recordings" then reads less stuck
            audio = f"{done / 3600:.2f} of {max(self.tally['seconds'], done) / 3600:.2f} h audio"
        return (
            f"{audio}, {counted(self.errors, 'error')}, "
            f"{audio_rate:.1f} audio s/s, ETA {format_duration(eta) if eta is not None else '?'}"
        )

    def line(self) -> str:
        done = self.already_done + self.done
        percent = 100.0 * done / self.total if self.total else 100.0
        return f"progress: {done}/{self.total} recordings ({percent:.0f}%), {self.stats()}"

    # ---------------------------------------------------------------- watching

    def __enter__(self) -> "CommitProgress":
        if CONSOLE.quiet:
            return self
        try:
            self._start()
        except BaseException:  # Ctrl-C right after the first line: no __exit__ will stop the watcher
            self._finish_watching()
            raise
        return self

    def _start(self) -> None:
        # a terminal of no width (`script` or `docker exec -t` before it is sized) draws an empty bar
        if in_notebook() or (self.stream.isatty() and terminal_columns(self.stream) > 0):
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=self.total,
                initial=self.already_done,
                unit="rec",
                desc="recordings",
                file=None if in_notebook() else self.stream,
                dynamic_ncols=True,
            )
        else:
            print(self.line(), file=self.stream, flush=True)
            self._last_line = time.monotonic()
        self._thread.start()

    def _finish_watching(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def __exit__(self, *exc_info) -> None:
        try:
            if CONSOLE.quiet:
                return
            self._finish_watching()
            self.update()
            if self._bar is not None:
                self._bar.close()
            else:
                print(self.line(), file=self.stream, flush=True)
        finally:
            try:
                forget_tallies(self.tally_key)
            except Exception:  # noqa: BLE001 - a Ray already gone (Ctrl-C) keeps nothing to forget
                pass

    def _watch(self) -> None:
        while not self._stop.wait(self.poll):
            try:
                self.update()
            except Exception:  # noqa: BLE001 - a failed listing must never stop the run; try again later
                continue
            if self._bar is None and time.monotonic() - self._last_line >= CONSOLE.progress_interval:
                print(self.line(), file=self.stream, flush=True)
                self._last_line = time.monotonic()

    def update(self) -> None:
        """Reads the model actors' tallies and the recordings parts committed since the last look."""
        try:
            self.tally = forward_tallies(self.tally_key)
        except Exception:  # noqa: BLE001 - a tally is a hint; the commits below are the count
            pass
        if self._first_tally is None and self.tally["forwarded"] > 0:
            self._first_tally = (time.monotonic(), self.tally["forwarded"])
        new = self.layout.part_tokens("recordings") - self.seen_tokens
        if not new:
            if self._bar is not None:
                self._bar.set_postfix_str(self.stats())
            return
        import pyarrow.parquet as pq

        for token in new:
            with self.layout.fs.open(self.layout.part_path("recordings", token), "rb") as f:
                table = pq.read_table(f, columns=["status", "duration"])
            statuses = table["status"].to_pylist()
            self.done += len(statuses)
            self.errors += sum(1 for s in statuses if s != "ok")
            self.audio_seconds += sum(d for d in table["duration"].to_pylist() if d is not None)
        self.seen_tokens |= new
        if self._bar is not None:
            self._bar.n = self.already_done + self.done
            self._bar.set_postfix_str(self.stats(), refresh=False)
            self._bar.refresh()


def gather(futures: list, what: str) -> list:
    """`ray.get(futures)` for a step fanned out over Ray (scoring, global RTTMs), with a `Ticker` line
    as they finish."""
    import ray

    ticker = Ticker(what, len(futures))
    pending = list(futures)
    while pending:
        ready, pending = ray.wait(pending, num_returns=len(pending), timeout=1.0)
        ticker.advance(len(ready))
    return ray.get(futures)
