"""One run per output: the lease on `--output` (pipeline/corpus/lease.py), locally and on the S3
endpoint on loopback. Two runs started together: exactly one gets the lease; a second run, or a
`--resume`, started while a run works is refused with one line naming the holder and the first run
records each input once; `--resume` takes over the lease of a run that is gone."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import FAST_MODEL, REPO, ami_rows, free_port, with_absolute_paths, write_jsonl

from pipeline.corpus.lease import LEASE_NAME, OutputInUse, OutputLease
from pipeline.errors import UsageError

NAMES = ("trn01", "trn02", "trn03")


def racer(output: str, options: dict, barrier, all_tried, results) -> None:
    """One of several processes trying to take the same lease at the same instant; a winner holds it
    until every process has tried, so that no one can take it after a release."""
    from pipeline.corpus.lease import OutputInUse, OutputLease

    barrier.wait(timeout=120)
    try:
        lease = OutputLease(output, options).acquire()
    except OutputInUse:
        results.put("refused")
        return
    results.put("acquired")
    all_tried.wait(timeout=120)
    lease.release()


def race(output: str, options: dict | None = None, runs: int = 4) -> list[str]:
    context = multiprocessing.get_context("spawn")
    results, barrier, all_tried = context.Queue(), context.Barrier(runs), context.Event()
    processes = [
        context.Process(target=racer, args=(output, options or {}, barrier, all_tried, results)) for _ in range(runs)
    ]
    for process in processes:
        process.start()
    outcomes = sorted(results.get(timeout=180) for _ in processes)
    all_tried.set()
    for process in processes:
        process.join(60)
    return outcomes


@pytest.fixture
def serial_s3_endpoint(aws_env):
    """moto's S3 API handling one request at a time. moto checks `If-None-Match` and then writes
    without a lock, which S3 itself does atomically; a lock around each request gives the
    atomicity the race depends on."""
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    moto_app, lock = DomainDispatcherApplication(create_backend_app), threading.Lock()

    def one_at_a_time(environ, start_response):
        with lock:
            return list(moto_app(environ, start_response))

    server = make_server("127.0.0.1", free_port(), one_at_a_time, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_runs_started_together_locally_get_the_lease_exactly_once(tmp_path):
    assert race(str(tmp_path / "out")) == ["acquired", "refused", "refused", "refused"]
    assert not (tmp_path / "out" / LEASE_NAME).exists(), "released at the end"


@pytest.mark.slow
def test_runs_started_together_on_s3_get_the_lease_exactly_once(serial_s3_endpoint):
    import boto3

    boto3.client("s3", endpoint_url=serial_s3_endpoint).create_bucket(Bucket="lease-race")
    options = {"endpoint_url": serial_s3_endpoint}
    assert race("s3://lease-race/run", options) == ["acquired", "refused", "refused", "refused"]
    listing = boto3.client("s3", endpoint_url=serial_s3_endpoint).list_objects_v2(Bucket="lease-race")
    assert listing.get("KeyCount", 0) == 0, "released at the end"


def test_heartbeat_renews_the_lease_and_release_deletes_it(tmp_path):
    lease = OutputLease(str(tmp_path), heartbeat_seconds=0.2).acquire()
    first = json.loads((tmp_path / LEASE_NAME).read_text())
    time.sleep(1.0)
    later = json.loads((tmp_path / LEASE_NAME).read_text())
    assert later["run_id"] == first["run_id"] and later["heartbeat"] > first["heartbeat"]
    assert (first["host"], first["pid"]) == (socket.gethostname(), os.getpid())
    lease.release()
    assert not (tmp_path / LEASE_NAME).exists()


def write_lease(output: Path, host: str, pid: int, age_seconds: float) -> None:
    output.mkdir(parents=True, exist_ok=True)
    started = time.time() - age_seconds - 60
    (output / LEASE_NAME).write_text(
        json.dumps(
            {
                "run_id": "0" * 32,
                "host": host,
                "pid": pid,
                "pid_started": None,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(started)),
                "heartbeat": time.time() - age_seconds,
                "heartbeat_seconds": 10.0,
            }
        )
    )


def test_a_live_lease_of_another_host_is_refused_even_with_resume(tmp_path):
    write_lease(tmp_path, "gpu-node-7", 4242, age_seconds=2)
    for resume in (False, True):
        with pytest.raises(OutputInUse) as refused:
            OutputLease(str(tmp_path)).acquire(resume=resume)
        message = str(refused.value)
        assert "\n" not in message
        assert "in use by another run (host gpu-node-7, pid 4242, started " in message


@pytest.mark.parametrize(
    "heartbeat, text",
    [("abc", None), (time.time() + 1e6, None), (None, "{not json")],
    ids=["heartbeat_not_a_number", "heartbeat_in_the_future", "not_json"],
)
def test_a_malformed_or_impossible_lease_is_one_line_and_resume_takes_it_over_once_stale(tmp_path, heartbeat, text):
    """No believable heartbeat: the lease file's own time decides (the store's clock), so an
    hour-old file is stale and `--resume` takes it over; a fresh one is still refused, in one line."""
    write_lease(tmp_path, "gpu-node-7", 4242, age_seconds=0)
    lease_file = tmp_path / LEASE_NAME
    if text is not None:
        lease_file.write_text(text)
    else:
        lease_file.write_text(json.dumps({**json.loads(lease_file.read_text()), "heartbeat": heartbeat}))
    for resume in (False, True):
        with pytest.raises(OutputInUse) as refused:
            OutputLease(str(tmp_path)).acquire(resume=resume)
        assert "\n" not in str(refused.value) and "in use by another run (" in str(refused.value)
    an_hour_ago = time.time() - 3600
    os.utime(lease_file, (an_hour_ago, an_hour_ago))
    with pytest.raises(OutputInUse, match="appears gone .*rerun with --resume to take it over"):
        OutputLease(str(tmp_path)).acquire(resume=False)
    OutputLease(str(tmp_path)).acquire(resume=True).release()
    assert not lease_file.exists()


def test_a_lease_file_that_is_a_symbolic_link_is_refused_and_its_target_untouched(tmp_path):
    from pipeline.corpus.lease import OutputNotWritable

    output, target = tmp_path / "output", tmp_path / "precious.txt"
    output.mkdir()
    target.write_text("not a lease")
    an_hour_ago = time.time() - 3600
    os.utime(target, (an_hour_ago, an_hour_ago))
    (output / LEASE_NAME).symlink_to(target)
    with pytest.raises(
        OutputNotWritable, match=f"^{output / LEASE_NAME} is a symbolic link \\(to {target}\\); .*never followed"
    ):
        OutputLease(str(output)).acquire(resume=True)
    assert target.read_text() == "not a lease"


def test_a_stale_lease_is_taken_over_by_resume_only(tmp_path):
    write_lease(tmp_path, "gpu-node-7", 4242, age_seconds=3600)
    with pytest.raises(OutputInUse, match="appears gone .*rerun with --resume to take it over"):
        OutputLease(str(tmp_path)).acquire(resume=False)
    lease = OutputLease(str(tmp_path)).acquire(resume=True)
    assert lease.took_over["host"] == "gpu-node-7"
    assert json.loads((tmp_path / LEASE_NAME).read_text())["pid"] == os.getpid()
    lease.release()


def test_a_lease_whose_process_has_ended_on_this_host_is_taken_over_at_once(tmp_path):
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    write_lease(tmp_path, socket.gethostname(), int(ended.stdout), age_seconds=1)
    with OutputLease(str(tmp_path)).acquire(resume=True) as lease:
        assert lease.took_over["pid"] == int(ended.stdout)


def ok_row(uniq_id: str, line: int) -> dict:
    return {
        "uniq_id": uniq_id,
        "audio_filepath": f"{uniq_id}.wav",
        "manifest": "manifest.jsonl",
        "line_number": line,
        "status": "ok",
        "error": None,
        "audio_seconds": 2.0,
        "segments": "0.000 1.000 speaker_0",
    }


def test_a_writer_of_a_killed_run_commits_nothing_once_resume_took_the_output_over(tmp_path):
    """A run killed with SIGKILL leaves Ray workers that finish their write tasks: once `--resume` took
    the lease over, such a block must not be committed beside the resumed run's (a line recorded
    twice), and a commit under way holds the takeover until it has landed."""
    from pipeline.corpus.lease import LeaseFence, LeaseLost
    from pipeline.corpus.outputs import OutputLayout
    from pipeline.corpus.sinks import CorpusSink

    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    write_lease(tmp_path, socket.gethostname(), int(ended.stdout), age_seconds=1)
    layout = OutputLayout(str(tmp_path))
    killed_run_writer = CorpusSink(layout, "ge2e", LeaseFence(str(tmp_path), None, "0" * 32))
    killed_run_writer.commit([ok_row("a", 1)])  # before the takeover: committed, and read as recorded

    takeover: list[OutputLease] = []
    with killed_run_writer.fence.held():  # a commit record being written when --resume starts
        thread = threading.Thread(target=lambda: takeover.append(OutputLease(str(tmp_path)).acquire(resume=True)))
        thread.start()
        thread.join(1.0)
        assert not takeover, "the takeover waits for the commit under way"
    thread.join(60)
    (resumed,) = takeover
    with pytest.raises(LeaseLost, match="now names another run .*pid " + str(os.getpid())):
        killed_run_writer.commit([ok_row("b", 2)])
    assert len(layout.part_tokens("recordings")) == 1 and not (tmp_path / "rttm" / "b.rttm").exists()

    CorpusSink(layout, "ge2e", resumed.fence()).commit([ok_row("b", 2)])
    assert sorted(pq.read_table(tmp_path / "recordings")["uniq_id"].to_pylist()) == ["a", "b"]
    resumed.release()
    with pytest.raises(LeaseLost, match="no run"):  # a finished run's lease is gone too
        killed_run_writer.fence.check()


def test_two_resumes_of_a_gone_run_take_it_over_exactly_once(tmp_path):
    write_lease(tmp_path, "gpu-node-7", 4242, age_seconds=3600)
    outcomes: list[str] = []

    def resume():
        try:
            OutputLease(str(tmp_path)).acquire(resume=True)
            outcomes.append("acquired")
        except OutputInUse:
            outcomes.append("refused")

    threads = [threading.Thread(target=resume) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["acquired", "refused", "refused", "refused"]


# ---------------------------------------------------------------------- whole runs


def corpus_manifest(folder: Path, copies: int = 2) -> Path:
    """Every AMI excerpt of NAMES `copies` times (as slices, so each row has its own id)."""
    rows = [
        {**with_absolute_paths(row), "offset": 10.0 * k, "duration": 10.0}
        for k in range(copies)
        for row in ami_rows(*NAMES)
    ]
    return write_jsonl(folder / "manifest.jsonl", rows)


def cli(*arguments: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *arguments], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


def run_in_thread(**kwargs) -> tuple[threading.Thread, dict]:
    import pipeline

    result: dict = {}

    def target():
        try:
            result["summary"] = pipeline.run_corpus(**kwargs)
        except BaseException as error:  # noqa: BLE001 - reported by the test
            result["error"] = error

    thread = threading.Thread(target=target)
    thread.start()
    return thread, result


def wait_for_lease(exists, thread: threading.Thread, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not exists():
        assert thread.is_alive() and time.monotonic() < deadline, "the first run never took its lease"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("second", [[], ["--resume"]], ids=["second_run", "concurrent_resume"])
def test_a_second_run_on_a_working_output_is_refused_and_inputs_are_recorded_once(local_ray, tmp_path, second):
    manifest = corpus_manifest(tmp_path)
    output = tmp_path / "output"
    thread, result = run_in_thread(manifests=str(manifest), output=str(output), model=FAST_MODEL, batch_size=1)
    wait_for_lease((output / LEASE_NAME).exists, thread)

    refused = cli("diarize", "--manifest", str(manifest), "--output", str(output), "--model", FAST_MODEL, *second)
    first_still_working = thread.is_alive()
    thread.join()

    assert first_still_working, "the second run must have been tried while the first worked"
    assert refused.returncode != 0
    assert (
        f"{output} is in use by another run (host {socket.gethostname()}, pid {os.getpid()}, started " in refused.stderr
    )
    assert "error" not in result, result.get("error")
    recordings = pq.read_table(output / "recordings").to_pylist()
    assert len(recordings) == 2 * len(NAMES) and len({r["uniq_id"] for r in recordings}) == 2 * len(NAMES), (
        "each input once"
    )
    assert result["summary"]["recorded_rows"] == result["summary"]["input_rows"] == 2 * len(NAMES)
    assert not (output / LEASE_NAME).exists(), "the lease is released at the end"


@pytest.mark.slow
def test_a_second_run_on_a_working_s3_output_is_refused(local_ray, s3_endpoint, tmp_path):
    import boto3
    import s3fs

    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket="lease-runs")
    manifest = corpus_manifest(tmp_path)
    output = "s3://lease-runs/run1"
    options = {"endpoint_url": s3_endpoint}
    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint)

    def lease_exists() -> bool:
        fs.invalidate_cache()
        return fs.exists(f"lease-runs/run1/{LEASE_NAME}")

    thread, result = run_in_thread(
        manifests=str(manifest), output=output, model=FAST_MODEL, batch_size=1, storage_options=options
    )
    wait_for_lease(lease_exists, thread)
    refused = cli("diarize", "--manifest", str(manifest), "--output", output, "--endpoint-url", s3_endpoint, "--resume")
    first_still_working = thread.is_alive()
    thread.join()

    assert first_still_working
    assert (
        refused.returncode != 0
        and f"{output} is in use by another run (host {socket.gethostname()}, pid {os.getpid()}" in refused.stderr
    )
    assert "error" not in result, result.get("error")
    with fs.open("lease-runs/run1/manifest.jsonl") as f:
        assert len(f.read().splitlines()) == 2 * len(NAMES)
    assert result["summary"]["recorded_rows"] == 2 * len(NAMES)
    assert not lease_exists()


@pytest.mark.slow
def test_resume_takes_over_the_lease_of_a_run_that_is_gone(local_ray, tmp_path):
    import pipeline

    manifest = write_jsonl(tmp_path / "manifest.jsonl", [with_absolute_paths(r) for r in ami_rows("trn02")])
    output = tmp_path / "output"
    write_lease(output, "gpu-node-7", 4242, age_seconds=3600)
    with pytest.raises(OutputInUse):
        pipeline.run_corpus(str(manifest), str(output), model=FAST_MODEL)
    summary = pipeline.run_corpus(str(manifest), str(output), model=FAST_MODEL, resume=True)
    assert (summary["recorded_rows"], summary["ok"]) == (1, 1)
    assert not (output / LEASE_NAME).exists()


def test_the_lease_is_released_when_a_run_fails(local_ray, tmp_path):
    import pipeline

    output = tmp_path / "output"
    with pytest.raises((FileNotFoundError, UsageError)):
        pipeline.run_corpus(str(tmp_path / "missing.jsonl"), str(output), model=FAST_MODEL)
    assert not (output / LEASE_NAME).exists()
