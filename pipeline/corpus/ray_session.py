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
import gc
import os
import signal
import threading
import traceback

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


def release_failed_execution(error: BaseException) -> None:
    """End the model actors of a run that failed, now, while `error` is still held.

    On a failure Ray Data shuts its executor down without killing the actor pool: the actors end when
    the last handle to them goes. The error's tracebacks reach Ray Data's finished frames (the
    executor thread's among them, through each frame's caller), whose locals hold those handles, so
    the actors (each with its CPUs or GPU) lived as long as the caller kept the error (pytest,
    IPython's `sys.last_value`) and then until a garbage collection: the next run in the same
    session waited for their resources (ray-project/ray#24948). Finished frames give up their locals
    (tracebacks keep their lines; frames still running are left as they are) and the cycles are
    collected."""
    seen: set[int] = set()  # ids: an exception graph may hold the same error twice, or a cycle
    pending: list[BaseException | None] = [error]
    while pending:
        exception = pending.pop()
        if exception is None or id(exception) in seen:
            continue
        seen.add(id(exception))
        pending += [exception.__cause__, exception.__context__, *getattr(exception, "exceptions", ())]
        for frame, _ in traceback.walk_tb(exception.__traceback__):
            while frame is not None:
                try:
                    frame.clear()
                except RuntimeError:  # still running (this call's callers): so are the frames above it
                    break
                frame = frame.f_back
    gc.collect()
