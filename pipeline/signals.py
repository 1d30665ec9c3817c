"""How a run ends on SIGTERM (`ray job stop`, Kubernetes, `kill`): as on Ctrl-C, so that the output
lease is released, a local Ray is stopped and the CLI prints the command that resumes the run.
Ray-free: the CLI installs its handler before anything heavy loads."""

from __future__ import annotations

import signal
import threading


def exit_on_sigterm() -> None:
    """SIGTERM ends the process through `SystemExit` (as Ctrl-C does through `KeyboardInterrupt`),
    so `finally` blocks (the output lease) and exit handlers (`stop_local_ray`) run. Kept when the
    program has its own handler (`connect_ray` puts it back after `ray.init`, which installs
    `sys.exit(15)`); only the main thread can install one."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _exit_on_signal)


def _exit_on_signal(signum, frame) -> None:
    raise SystemExit(128 + signum)


class Terminated(KeyboardInterrupt):
    """SIGTERM (`ray job stop`, Kubernetes, `kill`) raised in the main thread, so that a program
    that handles Ctrl-C ends the same way (the CLI: the resume line, exit 143)."""


def interrupt_on_sigterm() -> None:
    """SIGTERM raises `Terminated` (a KeyboardInterrupt) from here on; the main thread only."""

    def terminated(signum, frame):
        raise Terminated()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, terminated)
