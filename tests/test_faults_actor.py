"""A model actor that dies mid-run (its process SIGKILLed) is restarted by Ray and its batch retried:
the run completes with every input row recorded exactly once, all ok.

Ray Data's actor pool creates its actors with `max_restarts=-1` and `max_task_retries=-1` unless the
plan says otherwise (ray/data/_internal/execution/operators/actor_pool_map_operator.py, Ray 2.60), so
the plan relies on those defaults; this test is what shows they hold."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest
from conftest import REPO

NUM_RECORDINGS = 12
ACTOR_NAME = "DiarizeForward"


@pytest.fixture(scope="module")
def simulated_corpus(tmp_path_factory) -> Path:
    corpus = tmp_path_factory.mktemp("sim")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.simulate",
            "--out",
            str(corpus),
            "--num",
            str(NUM_RECORDINGS),
            "--min-duration",
            "10",
            "--max-duration",
            "14",
            "--min-speakers",
            "2",
            "--max-speakers",
            "2",
            "--seed",
            "3",
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    return corpus


def model_actor_processes() -> list[psutil.Process]:
    """The model actors' worker processes of this test's own Ray (descendants of this process, so a
    Ray of another session on the same machine is never touched)."""
    found = []
    for process in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if ACTOR_NAME in " ".join(process.cmdline()):
                found.append(process)
        except psutil.Error:
            continue
    return found


def kill_model_actor_part_way(
    output: Path, killed: list[int], restarted: list[int], stop: threading.Event, timeout: float = 120
) -> None:
    """Once some rows (not all) are written, SIGKILL every model actor process once; then note the
    pids of the model actor processes that replace them."""
    deadline = time.monotonic() + timeout
    while not stop.is_set() and time.monotonic() < deadline:
        written = len(list((output / "recordings").glob("part-*.parquet"))) if (output / "recordings").exists() else 0
        if written >= 2:
            actors = model_actor_processes()
            if actors:
                killed.append(written)
                for process in actors:
                    killed.append(process.pid)
                    os.kill(process.pid, signal.SIGKILL)
                break
        time.sleep(0.05)
    while not stop.is_set() and time.monotonic() < deadline and not restarted:
        restarted.extend(p.pid for p in model_actor_processes() if p.pid not in killed[1:])
        time.sleep(0.05)


@pytest.mark.slow
def test_killed_model_actor_is_restarted_and_every_row_recorded_once(local_ray, simulated_corpus, tmp_path):
    import pipeline

    output = tmp_path / "output"
    killed: list[int] = []
    restarted: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=kill_model_actor_part_way, args=(output, killed, restarted, stop), daemon=True)
    killer.start()
    try:
        summary = pipeline.run_corpus(str(simulated_corpus / "manifest.jsonl"), str(output), batch_size=1)
    finally:
        stop.set()
        killer.join()

    assert len(killed) >= 2, "no model actor was killed part-way"
    rows_before_kill, killed_pids = killed[0], killed[1:]
    assert rows_before_kill < NUM_RECORDINGS, "the kill came after the last row"
    assert restarted, "Ray started no new model actor after the kill"
    assert all(
        not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE for pid in killed_pids
    )

    recordings = pq.read_table(output / "recordings").to_pylist()
    expected = [f"sim-{i:04d}" for i in range(NUM_RECORDINGS)]
    assert sorted(r["uniq_id"] for r in recordings) == expected, "every row exactly once"
    assert [r["error"] for r in recordings if r["status"] != "ok"] == []
    assert (summary["input_rows"], summary["recorded_rows"], summary["ok"], summary["errors"]) == (
        NUM_RECORDINGS,
        NUM_RECORDINGS,
        NUM_RECORDINGS,
        0,
    )
    assert sorted(p.stem for p in (output / "rttm").glob("*.rttm")) == expected
    segments = pq.read_table(output / "segments", columns=["uniq_id"]).column("uniq_id").to_pylist()
    assert set(segments) == set(expected)
