"""Shared fixtures: real data from ../shared/data, a local Ray, and a real S3 endpoint on loopback."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
from pathlib import Path

import pytest

# A suite started in the background by a non-interactive shell (`make test &`, nohup) inherits
# SIGINT ignored, and so would every CLI it starts: Python leaves an ignored SIGINT ignored, and
# the Ctrl-C tests' interrupt would be lost. A handled signal is reset to the default in a child,
# as a terminal's would be.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# pytest-xdist's workers (`make test`: two) share the machine's cores, so each worker's torch gets
# its share of threads instead of every core: two workers with two threads each on two cores spent
# 10-20 % more CPU-seconds waiting on each other (docs/RESULTS.md, "The test loop"). Set before any
# test module imports torch, and inherited by the worker's Ray and the CLIs it starts; a model
# actor still chooses its own threads (`--actor-threads`), as in a user's run. An OMP_NUM_THREADS
# given to `make test` wins (`OMP_NUM_THREADS=2 make test` is the comparison's other side).
#
# The model actors keep two threads, so two of them (one per worker) still share two cores; an
# OpenMP thread then spins at each barrier for a sibling that is descheduled. Waiting passively
# (libgomp reads it when torch loads: the workers' Rays and CLIs inherit it): two 2-thread forwards
# side by side took 4.7 s instead of 7.1-7.6 (default) and 2.2 instead of 5.6-32 (ge2e)
# (`python -m benchmarks.openmp_contention`; docs/journal/2026-12-08-progress-before-the-commit.md).
if "PYTEST_XDIST_WORKER" in os.environ:  # not in xdist's controller, whose environment the workers inherit
    share = (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, share)))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
TEST_THREADS = int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)  # torch's default: every core

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
AMI = DATA / "ami-excerpts"

# The model of pipeline-mechanics tests (lease, faults, preflight, plug-ins): the fastest registered
# model, not the default. One constant, so that renaming the models is one edit.
FAST_MODEL = "ge2e"


def skip_without(package: str, extra: str) -> None:
    """Skips the module when an optional extra is not installed, without importing it: collection
    runs in every pytest-xdist worker, and NeMo's import alone costs seconds."""
    import importlib.util

    if importlib.util.find_spec(package) is None:
        pytest.skip(f"the {extra} extra: pip install 'corpus-diarization[{extra}]'", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ami_rows(*names: str) -> list[dict]:
    """The AMI excerpt manifest rows for `names` (e.g. "trn02"), paths as written (relative)."""
    rows = [
        json.loads(line) for line in (AMI / "manifest.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    by_name = {Path(row["audio_filepath"]).stem: row for row in rows}
    return [by_name[name] for name in names]


def with_absolute_paths(row: dict, folder: Path = AMI) -> dict:
    return {key: str(folder / value) if key.endswith("_filepath") and value else value for key, value in row.items()}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def copied_ami_corpus(folder: Path, *names: str) -> Path:
    """Copies of the named excerpts in `folder` with a manifest of relative paths (audio and known
    speaker count only); returns the manifest."""
    for row in ami_rows(*names):
        shutil.copy(AMI / row["audio_filepath"], folder / row["audio_filepath"])
    rows = [{"audio_filepath": r["audio_filepath"], "num_speakers": r["num_speakers"]} for r in ami_rows(*names)]
    return write_jsonl(folder / "manifest.jsonl", rows)


@pytest.fixture(scope="session")
def aws_env():
    """Fake credentials, set before Ray starts so that its workers inherit them too."""
    patch = pytest.MonkeyPatch()
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        patch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "RAY_ADDRESS"):
        patch.delenv(name, raising=False)
    yield
    patch.undo()


@pytest.fixture(scope="session")
def local_ray(aws_env):
    """A Ray of this process only (`address="local"` never joins a cluster already running)."""
    import ray

    # Idle workers are kept for a minute (Ray's default: one second, above one per CPU), so that the
    # next test's corpus run finds its decode and post-processing workers with torch imported and its
    # model loaded: warm default-model runs of 3 x 10 s took 10 CPU-seconds each instead of 18
    # (docs/RESULTS.md, "The test loop"). Only the session's own Ray: a run's own Ray is the product's.
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        _system_config={"idle_worker_killing_time_threshold_ms": 60_000},
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def session_ray_address(local_ray) -> str:
    """The session's Ray as `--address` for CLI processes whose test is not about starting or
    stopping a Ray of their own: joining it (under a second) saves the ~15 s a fresh local Ray and its
    cold workers cost each CLI run."""
    return local_ray.get_runtime_context().gcs_address


@pytest.fixture(scope="session")
def s3_endpoint(aws_env):
    """A real S3 API (moto's server) on 127.0.0.1 at a free port."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def segments_by_recording(segments_table) -> dict[str, list[str]]:
    """A segments table back to NeMo's `"begin end speaker_k"` strings per recording, in table order."""
    by_id: dict[str, list[str]] = {}
    for row in segments_table.to_pylist():
        by_id.setdefault(row["uniq_id"], []).append(f"{row['start']:.3f} {row['end']:.3f} {row['speaker']}")
    return by_id


_IN_PROCESS: dict[tuple[str, tuple[str, ...]], dict[str, list[str]]] = {}


def in_process_segments(*names: str, model: str = "default") -> dict[str, list[str]]:
    """What `load_model(model).diarize(manifest)` gives for these AMI files, per uniq_id
    (computed once per session; the reference every Ray run is checked against)."""
    if (model, names) not in _IN_PROCESS:
        import tempfile

        from pipeline import load_model

        with tempfile.TemporaryDirectory() as folder:
            manifest = write_jsonl(Path(folder) / "manifest.jsonl", [with_absolute_paths(r) for r in ami_rows(*names)])
            segments = load_model(model, device="cpu").diarize(str(manifest), num_workers=0)
        _IN_PROCESS[model, names] = {name: list(s) for name, s in zip(names, segments) if s}
    return _IN_PROCESS[model, names]


@pytest.fixture(autouse=True)
def shared_models_stay_as_loaded():
    """A test that changes the config of a session-cached model (helpers.cpu_model) must change a
    `copy.copy()` of it: the accuracy tests after it would otherwise score another model."""
    yield
    from helpers import shared_models_changed

    assert not shared_models_changed(), "a test replaced a shared model's config: change a copy.copy() of the model"


_TERMINAL = None


def pytest_sessionstart(session):
    global _TERMINAL
    _TERMINAL = session.config.pluginmanager.get_plugin("terminalreporter")


def pytest_runtest_logreport(report):
    """A failure is named, with its last lines, the moment it happens: `-ra`'s summary comes only at
    the end, which a CI run stopped by its time limit never reaches. Each file's seconds are summed
    for the order of the next run (below)."""
    _file_seconds[file_of(report.nodeid)] = _file_seconds.get(file_of(report.nodeid), 0.0) + report.duration
    if report.failed and _TERMINAL is not None:
        tail = report.longreprtext.strip().splitlines()[-12:]
        _TERMINAL.write_line("")
        _TERMINAL.write_line(f"FAILED ({report.when}) {report.nodeid}", red=True)
        for line in tail:
            _TERMINAL.write_line(f"    {line[:300]}")


# The longest test files first. pytest-xdist (`make test`) hands out one file at a time to whichever
# worker is free, so a long file handed out last keeps one worker busy while the other waits; in
# order of their last durations (pytest's cache, .pytest_cache/), the two end together.
FILE_SECONDS = "corpus-diarization/file-seconds"
_file_seconds: dict[str, float] = {}


def file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def pytest_collection_modifyitems(config, items):
    last = config.cache.get(FILE_SECONDS, {}) if getattr(config, "cache", None) else {}  # -p no:cacheprovider
    # A fresh checkout (CI) has no durations yet: the files with `slow` tests go first.
    slow = {file_of(item.nodeid) for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: (-last.get(file_of(item.nodeid), 0.0), file_of(item.nodeid) not in slow))  # stable


def pytest_sessionfinish(session):
    if hasattr(session.config, "workerinput"):  # an xdist worker: the controller, which saw every report, writes
        return
    if _file_seconds and getattr(session.config, "cache", None) is not None:
        merged = {**session.config.cache.get(FILE_SECONDS, {}), **_file_seconds}
        session.config.cache.set(FILE_SECONDS, merged)
