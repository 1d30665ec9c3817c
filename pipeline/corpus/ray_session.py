"""Which Ray a run uses, and leaving nothing of it behind.

`connect_ray` joins `--address`, else `RAY_ADDRESS` (set by `ray job submit` inside a job), else
starts a Ray local to this process. A local Ray started here is stopped completely when the process
ends, normally, by Ctrl-C (SIGINT) or by SIGTERM: Ray's own exit handler stops its head processes
but leaves the node's `DashboardAgent` and `RuntimeEnvAgent` running (reparented to init), so
after `ray.shutdown()` the Ray processes that descend from this one and are still alive are ended,
by process id. When the process is killed outright (SIGKILL), its reaper (`reaper.py`) ends them. A
Ray joined by address belongs to its cluster and is never stopped here."""

from __future__ import annotations

import atexit
import os
import signal
import threading

import ray

from pipeline.corpus.reaper import end, is_ray_process, start_for_this_process

_STARTED_HERE = False


def ray_address(address: str | None) -> str:
    return address or os.environ.get("RAY_ADDRESS") or "local"


def connect_ray(address: str | None, local_options: dict | None = None, **init_options) -> None:
    """Join `address` or `RAY_ADDRESS` when given, else start a Ray local to this process (with
    `local_options` too, such as `include_dashboard`, which joining a cluster does not take); the
    dashboard address is shown once."""
    from pipeline.console import announce_dashboard, quiet_ray, quiet_ray_console, ray_init_options

    global _STARTED_HERE
    if not ray.is_initialized():
        target = ray_address(address)
        on_main_thread = threading.current_thread() is threading.main_thread()
        own_handler = signal.getsignal(signal.SIGTERM) if on_main_thread else None
        quiet_ray_console()
        context = ray.init(
            address=target,
            **{**ray_init_options(), **init_options},
            **((local_options or {}) if target == "local" else {}),
        )
        if own_handler not in (None, signal.SIG_DFL, signal.SIG_IGN):
            signal.signal(signal.SIGTERM, own_handler)  # ray.init replaced it with sys.exit(15)
        if target == "local" and not _STARTED_HERE:
            _STARTED_HERE = True
            atexit.register(stop_local_ray)  # runs before Ray's own handler (LIFO), while the tree is known
            start_for_this_process()
        announce_dashboard(getattr(context, "dashboard_url", None))
    quiet_ray()  # Ray's own logs stay out of the console (`pipeline.console`)


def stop_local_ray() -> None:
    """Shut down the Ray this process started, then end its processes that outlived the shutdown."""
    import psutil

    try:
        ours = [p for p in psutil.Process().children(recursive=True) if is_ray_process(p)]
    except psutil.Error:
        ours = []
    ray.shutdown()
    end(ours)
