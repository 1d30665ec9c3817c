"""The Ray job entry point on a real head node (`ray start --head` on loopback, with Ray's default
token authentication), submitted as the README does: `python -m pipeline submit --working-dir .`,
which runs Ray's own `ray job submit` and turns a client without the head's token into one line."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import pyarrow.parquet as pq
import pytest
from conftest import FAST_MODEL, REPO, copied_ami_corpus, free_port, in_process_segments, segments_by_recording

NAMES = ("trñ00", "trn02", "trn03")


def venv_env() -> dict:
    """The venv first on PATH (the job's `python` must have the project's dependencies), no RAY_ADDRESS,
    and one RAY_AUTH_MODE for head and client (token: what Ray 2.59+ turns on by itself)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_AUTH_MODE"] = "token"
    env["PATH"] = f"{os.path.dirname(sys.executable)}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture(scope="module")
def ray_head():
    """A head node in its own session (one for the module: it takes about 10 s to start), ended by
    killing that session's processes (never `ray stop`, which would also end the test session's own
    local Ray)."""
    port, dashboard_port = free_port(), free_port()
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    ray = os.path.join(os.path.dirname(sys.executable), "ray")
    command = [
        ray,
        "start",
        "--head",
        "--block",
        "--node-ip-address",
        "127.0.0.1",
        "--port",
        str(port),
        "--dashboard-host",
        "127.0.0.1",
        "--dashboard-port",
        str(dashboard_port),
        "--num-cpus",
        "2",
        "--temp-dir",
        temp_dir,
        "--disable-usage-stats",
        # the test session's own local Ray already holds the default agent ports
        "--dashboard-agent-listen-port",
        str(free_port()),
        "--dashboard-agent-grpc-port",
        str(free_port()),
        "--metrics-export-port",
        str(free_port()),
    ]
    head = subprocess.Popen(
        command, env=venv_env(), start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    address = f"http://127.0.0.1:{dashboard_port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert head.poll() is None, "ray start --head exited"
            try:
                urllib.request.urlopen(f"{address}/api/version", timeout=2)
                break
            except urllib.error.HTTPError:  # up, and asking for the token (authentication is on)
                break
            except OSError:
                assert time.monotonic() < deadline, "the head's dashboard never came up"
                time.sleep(1)
        yield address
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)
        head.wait()
        shutil.rmtree(temp_dir, ignore_errors=True)


def submit_when_agent_ready(
    submit: list[str], attempts: int = 30, env: dict | None = None
) -> subprocess.CompletedProcess:
    """The dashboard answers before its job agent is up; Ray then says to try again later."""
    for _ in range(attempts):
        finished = subprocess.run(submit, cwd=REPO, env=env or venv_env(), capture_output=True, text=True, timeout=400)
        if "No available agent to submit job" not in finished.stdout + finished.stderr:
            return finished
        time.sleep(2)
    return finished


@pytest.mark.slow
def test_job_submit_labels_the_corpus(ray_head, tmp_path):
    manifest = copied_ami_corpus(tmp_path, *NAMES)
    output = tmp_path / "output"
    submit = [
        sys.executable,
        "-m",
        "pipeline",
        "submit",
        "--address",
        ray_head,
        "--working-dir",
        ".",
        "--",
        "python",
        "jobs/diarize_corpus.py",
        "--manifest",
        str(manifest),
        "--output",
        str(output),
        "--batch-size",
        "2",
        "--model",
        FAST_MODEL,  # the job's submission and its cluster are under test; the default model is on Ray elsewhere
    ]
    finished = submit_when_agent_ready(submit)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    assert "3 input rows: 3 ok, 0 errors" in finished.stdout
    assert segments_by_recording(pq.read_table(output / "segments")) == in_process_segments(*NAMES, model=FAST_MODEL)
    assert sorted(p.name for p in (output / "rttm").iterdir()) == sorted(f"{name}.rttm" for name in NAMES)


@pytest.mark.parametrize(
    "auth, says",
    [
        ({}, "asks for a token: export RAY_AUTH_MODE=token and RAY_AUTH_TOKEN="),
        ({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "not-the-heads-token"}, "refused this client's token"),
    ],
    ids=["no-token", "another-token"],
)
def test_a_client_without_the_head_s_token_is_told_the_fix_in_one_line(ray_head, auth, says):
    env = {k: v for k, v in venv_env().items() if not k.startswith("RAY_AUTH")} | auth
    submit = [sys.executable, "-m", "pipeline", "submit", "--address", ray_head, "--", "python", "-c", "pass"]
    finished = submit_when_agent_ready(submit, env=env)
    output = (finished.stdout + finished.stderr).strip()
    assert finished.returncode == 2, output
    assert len(output.splitlines()) == 1 and output.startswith(f"error: {ray_head} {says}"), output


def test_a_head_that_does_not_answer_is_one_line_naming_the_address():
    address = f"http://127.0.0.1:{free_port()}"
    submit = [sys.executable, "-m", "pipeline", "submit", "--address", address, "--", "python", "-c", "pass"]
    finished = subprocess.run(submit, cwd=REPO, env=venv_env(), capture_output=True, text=True, timeout=120)
    output = (finished.stdout + finished.stderr).strip()
    assert finished.returncode == 2, output
    assert output == f"error: cannot reach the Ray dashboard at {address}: check --address (http://HEAD:8265) " + (
        "and that the head runs"
    )


def test_a_working_dir_that_does_not_exist_is_one_line(ray_head, tmp_path):
    missing = tmp_path / "nowhere"
    submit = [sys.executable, "-m", "pipeline", "submit", "--address", ray_head, "--working-dir", str(missing)]
    finished = submit_when_agent_ready([*submit, "--", "python", "-c", "pass"])
    output = (finished.stdout + finished.stderr).strip()
    assert finished.returncode == 2, output
    # Ray's own first line (the server's address) comes before it; then one line, no traceback
    assert output.splitlines()[-1].startswith(f"error: directory {missing} must be"), output
    assert "Traceback" not in output, output
