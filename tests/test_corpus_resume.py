"""Resume: a run killed part-way, rerun with --resume, gives exactly one row per input and the RTTMs
an uninterrupted run gives."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import psutil
import pyarrow.parquet as pq
import pytest
from conftest import FAST_MODEL, REPO, copied_ami_corpus, segments_by_recording, with_absolute_paths, write_jsonl
from helpers import ge2e_model, ray_descendants, still_running

from pipeline.io.rttm import parse_segment, rttm_text

# Eighteen 10 s slices of six excerpts: the model actor forwards while the first post-processing task
# still loads its model, so that with six whole excerpts a run on an idle host had forwarded all of
# them, and ended, before its first commit.
NAMES = ("trñ00", "trn01", "trn02", "trn03", "trn04", "trn05")


def start_cli_run(manifest, output) -> subprocess.Popen:
    """`python -m pipeline diarize` in its own session, so that it and its local Ray can be killed
    together. (Not on the session's Ray: a driver SIGKILLed there left that Ray restarting a later
    test's killed actor where test_faults_actor no longer saw it.)"""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PATH"] = f"{os.path.dirname(sys.executable)}{os.pathsep}{env.get('PATH', '')}"
    command = [
        sys.executable,
        "-m",
        "pipeline",
        "diarize",
        "--manifest",
        str(manifest),
        "--output",
        str(output),
        "--batch-size",
        "1",
        "--model",
        FAST_MODEL,  # resuming is the pipeline's, whatever the model
    ]
    return subprocess.Popen(
        command, cwd=REPO, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def kill_after_first_block(process: subprocess.Popen, output, timeout: float = 300) -> None:
    """SIGKILL of the CLI alone once a block is committed, as `kill -9 PID` or the OOM killer do: no
    handler of it runs, and its reaper (`pipeline.corpus.reaper`) must end its local Ray's processes."""
    deadline = time.monotonic() + timeout
    ray_processes = []
    try:
        # Ray's processes are listed once the model actor is among them (it forwards before any
        # commit), then the kill follows the first commit at once: listing a process tree takes a
        # second or more on a loaded host, long enough for a short run's last blocks to land after
        # its first and the run to end (one failed suite run).
        while not any("DiarizeForward" in title for title in still_running(ray_processes)):
            assert process.poll() is None, "the run ended before its model actor was seen"
            assert time.monotonic() < deadline, f"no model actor among {still_running(ray_processes)}"
            time.sleep(0.1)
            ray_processes = ray_descendants(process.pid)
        while not list((output / "recordings").glob("part-*.parquet")):
            assert process.poll() is None, "the run ended before writing anything"
            assert time.monotonic() < deadline, "no block was written in time"
            time.sleep(0.05)
        assert process.poll() is None, "the run ended before the kill"
        process.kill()
        process.wait()
        deadline = time.monotonic() + 30
        while still_running(ray_processes) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert still_running(ray_processes) == [], "Ray processes outlived the SIGKILLed CLI"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # whatever is left of its session, even when it fails
        process.wait()
        for leftover in ray_processes:
            with contextlib.suppress(psutil.Error):
                leftover.kill()


@pytest.mark.slow
def test_killed_run_resumes_to_one_row_per_input_and_identical_rttms(local_ray, tmp_path):
    copied_ami_corpus(tmp_path, *NAMES)
    rows = [
        {"audio_filepath": f"{name}.wav", "offset": 10.0 * k, "duration": 10.0, "uniq_id": f"{name}-{k}"}
        for name in NAMES
        for k in range(3)
    ]
    manifest = write_jsonl(tmp_path / "manifest.jsonl", rows)
    output = tmp_path / "output"

    kill_after_first_block(start_cli_run(manifest, output), output)
    interrupted = pq.read_table(output / "recordings").num_rows
    assert 1 <= interrupted < len(rows), "the run was killed part-way"

    from pipeline.cli import main

    resume = ["diarize", "--manifest", str(manifest), "--output", str(output), "--batch-size", "1", "--resume"]
    assert main([*resume, "--model", FAST_MODEL]) == 0
    recordings = pq.read_table(output / "recordings").to_pylist()
    ids = [row["uniq_id"] for row in rows]
    assert sorted(r["uniq_id"] for r in recordings) == sorted(ids)
    assert all(r["status"] == "ok" for r in recordings)
    in_process = ge2e_model().diarize(
        str(write_jsonl(tmp_path / "absolute.jsonl", [with_absolute_paths(row, tmp_path) for row in rows])),
        num_workers=0,
    )
    expected = {uniq_id: list(segments) for uniq_id, segments in zip(ids, in_process) if segments}
    assert segments_by_recording(pq.read_table(output / "segments")) == expected
    for uniq_id in ids:
        written = (output / "rttm" / f"{uniq_id}.rttm").read_text(encoding="utf-8")
        assert written == rttm_text(uniq_id, [parse_segment(s) for s in expected.get(uniq_id, [])])
