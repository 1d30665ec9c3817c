"""Progress of a corpus run, counted from the sink's commits.

The sink commits a block by writing its `recordings/` part last (`outputs.OutputLayout`), so the
parts that have appeared are exactly the recordings done. A driver thread lists that folder every
`poll` seconds and reads only the new parts (a few KB each), which works the same for a local
folder and for `s3://` and needs nothing from the Ray plan. Shown as a tqdm bar on a terminal, a
widget in Jupyter (`tqdm.auto`), or a plain line every `CONSOLE.progress_interval` seconds when the
output is a log (CI, `ray job logs`)."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from fsspec.implementations.local import LocalFileSystem

from pipeline.console import CONSOLE, Ticker, counted, format_duration
from pipeline.corpus.outputs import OutputLayout


def in_notebook() -> bool:
    shell = sys.modules.get("IPython") and getattr(sys.modules["IPython"], "get_ipython", lambda: None)()
    return bool(shell) and type(shell).__name__ == "ZMQInteractiveShell"


class CommitProgress:
    """Watches `layout`'s commits while the plan runs: `with CommitProgress(layout, total, done):`."""

    def __init__(
        self,
        layout: OutputLayout,
        total: int,
        already_done: int = 0,
        poll: float | None = None,
        stream: TextIO | None = None,
    ):
        self.layout = layout
        self.total = total
        self.already_done = already_done
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

    def rate(self) -> tuple[float, float]:
        """Recordings per second and audio seconds per wall second, this run."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return self.done / elapsed, self.audio_seconds / elapsed

    def eta(self) -> float | None:
        per_second, _ = self.rate()
        remaining = self.total - self.already_done - self.done
        return remaining / per_second if per_second > 0 else None

    def stats(self) -> str:
        _, audio_rate = self.rate()
        eta = self.eta()
        return (
            f"{self.audio_seconds / 3600:.2f} h audio, {counted(self.errors, 'error')}, "
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
        if in_notebook() or self.stream.isatty():
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
        if CONSOLE.quiet:
            return
        self._finish_watching()
        self.update()
        if self._bar is not None:
            self._bar.close()
        else:
            print(self.line(), file=self.stream, flush=True)

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
        """Reads the recordings parts committed since the last look."""
        new = self.layout.part_tokens("recordings") - self.seen_tokens
        if not new:
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
