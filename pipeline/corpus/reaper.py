"""Ends the processes of a local Ray whose driver was killed outright (SIGKILL, the OOM killer), when
no exit handler of the driver could run: without it the node's agents and the model actors (a GB
each) live on, reparented to init, for a minute and a half.

`python -m pipeline.corpus.reaper PID` runs beside the driver PID in a session of its own (so
Ctrl-C in the driver's terminal does not reach it), reading the pipe whose other end only the driver
holds. Every `POLL_SECONDS` it notes the Ray processes descending from the driver; when the pipe
closes (the driver is gone, however it ended) it ends those still alive. After a clean exit the
driver has already stopped them (`ray_session.stop_local_ray`), and nothing is left to do. It
imports neither Ray nor torch."""

from __future__ import annotations

import os
import select
import sys

import psutil

POLL_SECONDS = 2.0
_HELD: list[int] = []  # the pipe's writing end, open for the life of the process that started the reaper


def is_ray_process(process: psutil.Process) -> bool:
    try:
        command = " ".join(process.cmdline())
    except psutil.Error:
        return False
    return "ray::" in command or f"{os.sep}ray{os.sep}" in command or "ray-dashboard" in command


def still_running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def end(processes: list[psutil.Process]) -> None:
    """SIGTERM, then SIGKILL for those still alive 5 s later."""
    alive = [p for p in processes if still_running(p)]
    for process in alive:
        try:
            process.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(alive, timeout=5)
    for process in alive:
        try:
            process.kill()
        except psutil.Error:
            pass


def watch(driver_pid: int, pipe: int) -> None:
    """Notes the driver's Ray descendants until `pipe` reads end-of-file, then ends them."""
    known: dict[int, psutil.Process] = {}
    try:
        driver = psutil.Process(driver_pid)
    except psutil.Error:
        return
    while not select.select([pipe], [], [], POLL_SECONDS)[0]:
        try:
            children = driver.children(recursive=True)
        except psutil.Error:
            break
        known.update((p.pid, p) for p in children if p.pid not in known and is_ray_process(p))
    end(list(known.values()))


def start_for_this_process() -> None:
    """Starts the reaper of this process's local Ray; the pipe's writing end stays open (and is not
    inherited by Ray's processes: `os.pipe` descriptors are not) until this process ends."""
    import subprocess

    read_end, write_end = os.pipe()
    subprocess.Popen(
        [sys.executable, "-m", "pipeline.corpus.reaper", str(os.getpid())],
        stdin=read_end,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    os.close(read_end)
    _HELD.append(write_end)


if __name__ == "__main__":
    watch(int(sys.argv[1]), sys.stdin.fileno())
