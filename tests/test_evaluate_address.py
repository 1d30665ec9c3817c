"""`evaluate` runs on the Ray it is pointed at (`--address`, else `RAY_ADDRESS`, which `ray job
submit` sets inside a job), not on a private local Ray.

The Ray pointed at is the test session's own (`local_ray`): a driver that joins it leaves its log,
`python-core-driver-<job>_<pid>.log`, in that Ray's session folder, which is how the test tells
which Ray the `evaluate` process used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import AMI, REPO, ami_rows, with_absolute_paths, write_jsonl

from pipeline.corpus.inputs import manifest_items
from pipeline.corpus.outputs import OutputLayout
from pipeline.corpus.tables import recordings_table, segments_table
from pipeline.io.ids import row_keys
from pipeline.io.rttm import read_rttm

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def given_ray(session_ray_address):
    """The address of the session's Ray and its session folder."""
    from ray._private.worker import _global_node

    return session_ray_address, Path(_global_node.get_session_dir_path())


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A run's output for trn02 whose hypothesis is the reference itself (DER 0)."""
    folder = tmp_path_factory.mktemp("run")
    row = with_absolute_paths(ami_rows("trn02")[0])
    manifest = write_jsonl(folder / "manifest.jsonl", [row])
    turns = read_rttm(str(AMI / "trn02.rttm"))["trn02"]
    segments = "\n".join(f"{t.start:.3f} {t.end:.3f} {t.speaker}" for t in turns)
    with open(manifest, "rb") as f:
        (item,) = manifest_items(f, str(manifest))  # the fields a run records for the row, from the run's own parser
    record = {
        "uniq_id": "trn02",
        "audio_filepath": row["audio_filepath"],
        "manifest": str(manifest),
        "line_number": 1,
        "status": "ok",
        "error": "",
        "segments": segments,
        "audio_seconds": 30.0,
        "row_key": row_keys([item["recording_hash"]])[0],
        "manifest_row": item["manifest_row"],
    }
    layout = OutputLayout(str(folder / "output"))
    layout.write_part("segments", "0", segments_table([record], "default"))
    layout.write_part("recordings", "0", recordings_table([record], "default"))
    layout.write_atomically(
        layout.path("summary.json"), json.dumps({"config": {"manifests": [str(manifest)]}}).encode()
    )
    return folder / "output"


def evaluate(output, *flags: str, env_extra: dict | None = None) -> tuple[subprocess.CompletedProcess, int]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(env_extra or {})
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "evaluate", "--output", str(output), *flags],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        process.kill()  # never left behind for the rest of the session
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr), process.pid


def joined(session_dir: Path, pid: int) -> bool:
    return bool(list(session_dir.glob(f"logs/python-core-driver-*_{pid}.log")))


@pytest.mark.parametrize("how", ["--address", "RAY_ADDRESS"])
def test_evaluate_runs_on_the_given_ray(given_ray, finished_run, how):
    address, session_dir = given_ray
    flags = ["--address", address] if how == "--address" else []
    run, pid = evaluate(finished_run, *flags, env_extra={"RAY_ADDRESS": address} if how == "RAY_ADDRESS" else None)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "OVERALL (1)" in run.stdout and " 0.00%" in run.stdout
    assert joined(session_dir, pid), f"evaluate (pid {pid}) did not join the Ray at {address}"


def test_without_an_address_evaluate_starts_its_own_ray(given_ray, finished_run):
    _, session_dir = given_ray
    run, pid = evaluate(finished_run)
    assert run.returncode == 0, run.stderr[-3000:]
    assert not joined(session_dir, pid)
