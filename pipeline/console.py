"""What a person watching a run sees: progress and the summary, not Ray's own logs.

`CONSOLE` holds the settings (like `logging`'s root logger): the CLI sets them from `--quiet`,
`-v`, `--progress-interval`; notebooks and jobs get the defaults. `quiet_ray()` keeps Ray's
driver-side chatter out of the console, and the CLI's `capture_stderr()` sends everything else
written to file descriptor 2 (Ray's C++ core worker logs, Python warnings) to the run's log file."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator, TextIO


@dataclass
class ConsoleSettings:
    stream: TextIO | None = None  # where progress and notices go; None: sys.stderr at the time
    quiet: bool = False  # no progress, no dashboard line
    verbose: bool = False  # Ray's logs on the console too
    progress_interval: float = 30.0  # seconds between plain progress lines when not a terminal
    log_file: str | None = None  # the run's log file, named in notices
    printed_dashboard: set = field(default_factory=set)

    @property
    def out(self) -> TextIO:
        return self.stream or sys.stderr

    def notice(self, message: str) -> None:
        if not self.quiet:
            print(message, file=self.out, flush=True)


CONSOLE = ConsoleSettings()


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """`1 recording`, `2 recordings`: the console's counts read as English at every size."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


@contextlib.contextmanager
def still_working(what: str, every: float | None = None) -> Iterator[None]:
    """A line every `every` seconds (default `CONSOLE.progress_interval`) while a step that cannot
    count its own progress runs, such as listing a bucket of a million objects: `progress: what (1m00s so
    far)`."""
    if CONSOLE.quiet:
        yield
        return
    started = time.monotonic()
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every or CONSOLE.progress_interval):
            CONSOLE.notice(f"progress: {what} ({format_duration(time.monotonic() - started)} so far)")

    thread = threading.Thread(target=beat, name="still-working", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


class Ticker:
    """Counts a long step's items: `progress: what done/total (pct), ETA 1m00s` every
    `CONSOLE.progress_interval` seconds while it works (nothing when quiet, or when it ends sooner)."""

    def __init__(self, what: str, total: int):
        self.what, self.total, self.done = what, total, 0
        self.started = self.last = time.monotonic()

    def advance(self, count: int = 1) -> None:
        self.done += count
        now = time.monotonic()
        if self.done < self.total and now - self.last >= CONSOLE.progress_interval:
            self.last = now
            rate = self.done / max(now - self.started, 1e-9)
            eta = format_duration((self.total - self.done) / rate) if rate > 0 else "?"
            CONSOLE.notice(
                f"progress: {self.what} {self.done}/{self.total} ({100 * self.done / self.total:.0f}%), ETA {eta}"
            )


def quiet_ray_console() -> None:
    """Ray's driver-side log lines (INFO and WARNING: token authentication, disabled progress bars,
    free CPUs) off the console, errors still shown: a notebook cell or a terminal shows the run's
    progress, not Ray's. Called before `ray.init` (it logs while it starts); Ray's session folder
    keeps Ray's own logs. Under the CLI, stderr is its log file already (`capture_stderr`): kept whole."""
    if CONSOLE.verbose or CONSOLE.log_file:
        return
    for name in ("ray", "ray.data"):
        for handler in logging.getLogger(name).handlers:
            if not isinstance(handler, logging.FileHandler):
                handler.setLevel(logging.ERROR)


def quiet_ray() -> None:
    """Ray Data's block-counting progress bars and INFO logs off the console (its own log file in
    Ray's session folder keeps them); our progress counts recordings instead."""
    if CONSOLE.verbose:
        return
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.enable_operator_progress_bars = False
    context.print_on_execution_start = False
    quiet_ray_console()


def ray_init_options() -> dict:
    """ray.init arguments that keep worker stdout/stderr and INFO lines out of the driver's console."""
    if CONSOLE.verbose:
        return {}
    return {"log_to_driver": False, "logging_level": logging.WARNING}


def announce_dashboard(url: str | None) -> None:
    """The Ray dashboard address, printed once per process."""
    if not url or url in CONSOLE.printed_dashboard:
        return
    CONSOLE.printed_dashboard.add(url)
    CONSOLE.notice(f"Ray dashboard: {url if '://' in url else 'http://' + url}")


@contextlib.contextmanager
def capture_stderr(log_path: str) -> Iterator[TextIO]:
    """File descriptor 2 goes to `log_path` (appended) for the duration; yields a stream on the
    original stderr for what the user should see. C++ and subprocess writes are captured too, which
    Python-level redirection cannot do."""
    os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    console = os.fdopen(os.dup(saved), "w", buffering=1, encoding="utf-8", errors="replace")
    os.dup2(log_fd, 2)
    os.close(log_fd)
    try:
        yield console
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        console.flush()
        console.close()
