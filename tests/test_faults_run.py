"""How a run ends when its surroundings fail: a full disk ends in one line and leaves no temporary
(and `--resume` removes those a killed run left), an output folder that is a symbolic link leading
elsewhere is refused, and a CLI stopped by SIGTERM or Ctrl-C leaves no Ray process running and
prints the command that resumes it."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
import uuid

import psutil
import pytest
from conftest import FAST_MODEL, REPO, ami_rows, with_absolute_paths, write_jsonl
from helpers import ray_descendants, still_running

from pipeline.corpus.lease import LEASE_NAME
from pipeline.corpus.outputs import OutputWriteFailed
from pipeline.errors import UsageError

PLUGIN_MODEL = "tests.plugin_models:energy_diarizer"
NAMES = ("trn01", "trn02", "trn03")


@pytest.fixture
def manifest(tmp_path):
    return write_jsonl(tmp_path / "manifest.jsonl", [with_absolute_paths(r) for r in ami_rows(*NAMES)])


def temporaries(folder):
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (needs root: skipped elsewhere)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(disk, leave_bytes: int) -> os.PathLike:
    """Fill `disk` until about `leave_bytes` are free."""
    stats = os.statvfs(disk)
    filler = disk / "filler"
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, stats.f_bavail * stats.f_frsize - leave_bytes))
    return filler


def test_a_full_disk_ends_in_one_line_leaves_no_temporary_and_resume_completes(local_ray, manifest, small_disk):
    import pipeline

    output = small_disk / "output"
    filler = fill(small_disk, leave_bytes=4096)  # room for the lease, not for the outputs
    with pytest.raises(OutputWriteFailed) as stopped:
        pipeline.run_corpus(str(manifest), str(output), model=PLUGIN_MODEL, batch_size=1)
    message = str(stopped.value)
    assert "\n" not in message and stopped.value.exit_code == 1
    assert (
        message.startswith(f"cannot write to {output} (")
        and "No space left on device; what was committed is kept" in message
    )
    assert temporaries(small_disk) == [], "no temporary left by the failed writes"
    assert not (output / LEASE_NAME).exists(), "the lease is released"

    filler.unlink()
    (output / "rttm").mkdir(parents=True, exist_ok=True)
    leftover = output / "rttm" / f".{uuid.uuid4().hex}.tmp"  # as a run killed mid-write leaves it
    leftover.write_text("partial")
    summary = pipeline.run_corpus(str(manifest), str(output), model=PLUGIN_MODEL, batch_size=1, resume=True)
    assert (summary["recorded_rows"], summary["ok"]) == (3, 3)
    assert temporaries(small_disk) == []
    assert sorted(p.stem for p in (output / "rttm").glob("*.rttm")) == sorted(NAMES)


@pytest.mark.parametrize("entry", ["rttm", "recordings", "manifest.jsonl"])
def test_an_output_entry_that_is_a_symlink_is_refused(local_ray, manifest, tmp_path, entry):
    import pipeline

    output, elsewhere = tmp_path / "output", tmp_path / "elsewhere"
    output.mkdir()
    elsewhere.mkdir()
    (output / entry).symlink_to(elsewhere if "." not in entry else elsewhere / entry)
    with pytest.raises(
        UsageError,
        match=f"^{output / entry} is a symbolic link \\(to {elsewhere}.*\\); outputs are never written through links",
    ):
        pipeline.run_corpus(str(manifest), str(output), model=FAST_MODEL)
    assert list(elsewhere.iterdir()) == [], "nothing written through the link"
    assert not (output / LEASE_NAME).exists()


def alive_model_actors() -> list[str]:
    """The model actors alive on the session's Ray (its GCS answers without a dashboard)."""
    from ray._private import state

    return [
        actor["ActorClassName"]
        for actor in state.actors().values()
        if "DiarizeForward" in actor["ActorClassName"] and actor["State"] != "DEAD"
    ]


@pytest.mark.slow
@pytest.mark.parametrize(
    "signum, on_session_ray",
    [(signal.SIGTERM, True), (signal.SIGINT, False)],
    ids=["SIGTERM-joined-ray", "SIGINT-own-ray"],
)
def test_a_stopped_cli_leaves_no_ray_process_and_no_lease(tmp_path, signum, on_session_ray, session_ray_address):
    """The CLI stopped once its model actor works: exit 128 + signal, no traceback, the resume
    command last, no model actor or Ray process and no lease left. SIGTERM is what `ray job stop`
    and Kubernetes send a driver on a running cluster: that CLI joins the session's Ray. Ctrl-C is
    a user's at a terminal: that CLI starts a local Ray of its own, whose every process must end
    with it; then the printed command (on the session's Ray) finishes the corpus, its stderr only
    progress lines (Ray's own lines go to the run's log)."""
    rows = [{**with_absolute_paths(r), "offset": 5.0 * k, "duration": 5.0} for k in range(4) for r in ami_rows(*NAMES)]
    manifest = write_jsonl(tmp_path / "manifest.jsonl", rows)
    output = tmp_path / "output"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PATH"] = f"{os.path.dirname(sys.executable)}{os.pathsep}{env.get('PATH', '')}"
    command = [sys.executable, "-m", "pipeline", "diarize", "--manifest", str(manifest), "--output", str(output)]
    command += ["--model", FAST_MODEL, "--batch-size", "1", "--progress-interval", "1"]
    if on_session_ray:
        command += ["--address", session_ray_address]
    cli = subprocess.Popen(
        command, cwd=REPO, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )

    def model_actor_started() -> bool:
        if on_session_ray:
            return bool(alive_model_actors())
        return any("DiarizeForward" in " ".join(p.cmdline()) for p in ray_descendants(cli.pid))

    ray_processes: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 240
        while not model_actor_started():
            assert cli.poll() is None, f"the run ended before its model actor started: {cli.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "no model actor started in time"
            time.sleep(0.5)
        time.sleep(2)
        if not on_session_ray:
            ray_processes = ray_descendants(cli.pid)
            assert any("DashboardAgent" in " ".join(p.cmdline()) for p in ray_processes)
        os.kill(cli.pid, signum)  # the CLI only, as `kill PID` does
        _, stderr = cli.communicate(timeout=120)
        deadline = time.monotonic() + 30
        while (still_running(ray_processes) or alive_model_actors()) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert still_running(ray_processes) == [], "Ray processes outlived the CLI"
        assert alive_model_actors() == [], "the CLI's model actor outlived it on the cluster"
        assert cli.returncode == 128 + signum, stderr[-2000:]  # 143 for SIGTERM (ray job stop), 130 for Ctrl-C
        lines = stderr.strip().splitlines()
        assert lines[-2].startswith("interrupted: committed recordings are kept"), stderr[-2000:]
        assert lines[-1].strip().startswith("python -m pipeline diarize") and lines[-1].endswith("--resume")
        assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-2000:]
        assert not (output / LEASE_NAME).exists(), "the lease is released on the way out"
    finally:
        if cli.poll() is None:
            os.killpg(cli.pid, signal.SIGKILL)
        for process in ray_processes:  # never leave this test's own processes behind, even when it fails
            try:
                process.kill()
            except psutil.Error:
                pass
    if signum == signal.SIGINT:
        resumed = subprocess.run(
            [sys.executable, *shlex.split(lines[-1].strip())[1:], "--address", session_ray_address],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert resumed.returncode == 0, resumed.stderr
        printed = resumed.stderr.strip().splitlines()
        assert printed and all(line.startswith(("progress: ", "Ray dashboard: ")) for line in printed), resumed.stderr
        assert printed[-1].startswith(f"progress: {len(rows)}/{len(rows)} recordings (100%)"), resumed.stderr
        assert "0 errors" in printed[-1] and f"{len(rows)} input rows: {len(rows)} ok, 0 errors" in resumed.stdout
        logs = list((output / "logs").glob("diarize-*.log"))
        assert logs and any(log.stat().st_size > 0 for log in logs)  # Ray's lines went here instead
