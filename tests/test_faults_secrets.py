"""Storage credentials never appear in what a run leaves behind or prints: outputs (summary.json,
manifest.jsonl, Parquet tables, RTTMs), error rows, exceptions, stdout/stderr and Ray's logs.
Credentials are distinctive fakes (moto accepts any), given as storage options or as the usual AWS
environment variables, on a corpus with failing rows. The CLI run with a Ray of its own also
shows an installed plug-in model reaching that Ray's workers (test_plugins.py has the rest of them)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import AMI, FAST_MODEL, REPO, segments_by_recording
from helpers import install_plugin

SECRET = "fAk3-S3cr3t-Ky9QwZ"
SESSION_TOKEN = "fAk3-S3ss10n-T0k3nVb"
GOOD = ("trn02", "trn03")
PLUGIN_THRESHOLD_DB = -40


@pytest.fixture(scope="module")
def corpus(s3_endpoint):
    """Two good recordings, one missing object and one corrupt object on moto."""
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint, skip_instance_cache=True)
    fs.mkdir("secrets")
    for name in GOOD:
        fs.put_file(str(AMI / f"{name}.wav"), f"secrets/in/{name}.wav")
    fs.pipe_file("secrets/in/corrupt.wav", b"RIFF not audio" * 20)
    rows = [{"audio_filepath": f"{name}.wav", "num_speakers": 1} for name in GOOD]
    rows += [{"audio_filepath": "missing.wav"}, {"audio_filepath": "corrupt.wav"}]
    fs.pipe_file("secrets/in/manifest.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    return fs


def assert_secret_free(texts: dict[str, str], *secrets: str) -> None:
    leaks = [name for name, text in texts.items() for secret in secrets if secret in text]
    assert leaks == [], f"credentials found in: {leaks}"


def output_texts(fs, prefix: str) -> dict[str, str]:
    """Every object the run wrote, as text (Parquet bytes included: a string column stays readable)."""
    fs.invalidate_cache()
    return {path: fs.cat_file(path).decode("utf-8", errors="replace") for path in fs.find(prefix)}


def folder_texts(folder: str | Path) -> dict[str, str]:
    texts = {}
    for path in Path(folder).rglob("*"):
        if path.is_file() and not path.is_socket():
            try:
                texts[str(path)] = path.read_bytes().decode("utf-8", errors="replace")
            except OSError:
                continue
    return texts


def assert_rows(fs, prefix: str) -> list[dict]:
    recordings = pq.read_table(f"{prefix}/recordings", filesystem=fs).to_pylist()
    by_id = {r["uniq_id"]: r for r in recordings}
    assert sorted(by_id) == sorted(GOOD + ("missing", "corrupt"))
    assert [by_id[name]["status"] for name in GOOD] == ["ok", "ok"]
    assert by_id["missing"]["status"] == by_id["corrupt"]["status"] == "error"
    return recordings


@pytest.mark.slow
def test_storage_option_secrets_stay_out_of_outputs_errors_logs_and_exceptions(local_ray, corpus, s3_endpoint, capfd):
    from ray._private.worker import _global_node

    import pipeline

    options = {"endpoint_url": s3_endpoint, "key": "AKIDFAKEFAULTTEST", "secret": SECRET, "token": SESSION_TOKEN}
    summary = pipeline.run_corpus(
        "s3://secrets/in/manifest.jsonl",
        "s3://secrets/out-options",
        model=FAST_MODEL,
        batch_size=2,
        storage_options=options,
    )
    assert (summary["input_rows"], summary["ok"], summary["errors"]) == (4, 2, 2)
    assert summary["config"]["storage_options"] == {"endpoint_url": s3_endpoint}

    failures = []
    for call in (
        lambda: pipeline.run_corpus(
            "s3://secrets/in/manifest.jsonl", "s3://secrets/out-options", model=FAST_MODEL, storage_options=options
        ),
        lambda: pipeline.run_corpus(
            "s3://secrets/in/no-such-manifest.jsonl", "s3://secrets/out-x", storage_options=options
        ),
        lambda: pipeline.run_corpus(
            "s3://no-such-bucket/manifest.jsonl", "s3://secrets/out-y", storage_options=options
        ),
    ):
        with pytest.raises(Exception) as raised:
            call()
        failures.append("".join(traceback.format_exception(raised.value)))

    assert "OutputExists" in failures[0] and "FileNotFoundError" in failures[1]
    recordings = assert_rows(corpus, "secrets/out-options")
    captured = capfd.readouterr()
    texts = {
        **output_texts(corpus, "secrets/out-options"),
        **{f"error row {r['uniq_id']}": r["error"] or "" for r in recordings},
        **{f"exception {i}": text for i, text in enumerate(failures)},
        "stdout": captured.out,
        "stderr": captured.err,
        **folder_texts(_global_node.get_logs_dir_path()),
    }
    assert any(name.endswith(".log") for name in texts), "Ray's logs were searched"
    assert_secret_free(texts, SECRET, SESSION_TOKEN)


@pytest.fixture(scope="module")
def environment_cli_run(corpus, s3_endpoint, tmp_path_factory):
    """One `python -m pipeline diarize` with a Ray of its own, everything it needs from its
    environment: the AWS credentials in the usual variables and the model an installed plug-in
    (`energy`, on PYTHONPATH and nowhere registered by code), which its workers must find too. One run
    serves the secrets' test and the plug-in's: each CLI with a Ray of its own costs the suite ~25 s."""
    site = tmp_path_factory.mktemp("site")
    install_plugin(site)
    ray_temp = tempfile.mkdtemp(prefix="rs", dir="/tmp")  # short: Ray's socket paths must fit
    try:
        env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "AWS_PROFILE")}
        env.update(
            AWS_ACCESS_KEY_ID="AKIDFAKEFAULTTEST",
            AWS_SECRET_ACCESS_KEY=SECRET,
            AWS_SESSION_TOKEN=SESSION_TOKEN,
            AWS_DEFAULT_REGION="us-east-1",
            RAY_TMPDIR=ray_temp,
            PATH=f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ.get('PATH', '')}",
            PYTHONPATH=os.pathsep.join([str(site), str(REPO)]),
        )
        command = [
            sys.executable,
            "-m",
            "pipeline",
            "diarize",
            "--manifest",
            "s3://secrets/in/manifest.jsonl",
            "--output",
            "s3://secrets/out-env",
            "--endpoint-url",
            s3_endpoint,
            "--batch-size",
            "2",
            "--model",
            "energy",
            "--model-arg",
            f"threshold_db={PLUGIN_THRESHOLD_DB}",
            "--print-segments",
            "--log-file",
            os.path.join(ray_temp, "logs", "cli-run.log"),
        ]  # the run's log (Ray's stderr) is searched too
        run = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        return run, folder_texts(ray_temp)
    finally:
        shutil.rmtree(ray_temp, ignore_errors=True)


@pytest.mark.slow
def test_environment_secrets_stay_out_of_cli_output_and_ray_logs(environment_cli_run, corpus):
    run, ray_texts = environment_cli_run
    assert run.returncode == 0, run.stderr[-3000:]
    assert_rows(corpus, "secrets/out-env")
    summary = json.loads(corpus.cat_file("secrets/out-env/summary.json"))
    assert (summary["ok"], summary["errors"]) == (2, 2)

    texts = {**output_texts(corpus, "secrets/out-env"), "stdout": run.stdout, "stderr": run.stderr, **ray_texts}
    assert any("/logs/" in name for name in texts), "Ray's logs were searched"
    assert_secret_free(texts, SECRET, SESSION_TOKEN)


@pytest.mark.slow
def test_an_installed_plugin_runs_on_the_workers_of_a_cli_s_own_ray(environment_cli_run, corpus):
    from pipeline import load_model

    run, _ = environment_cli_run
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(corpus.cat_file("secrets/out-env/summary.json"))
    assert (summary["config"]["model"], summary["config"]["model_kwargs"]) == ("energy", {"threshold_db": -40})
    in_process = load_model("tests.plugin_models:energy_diarizer", threshold_db=PLUGIN_THRESHOLD_DB).diarize(
        [str(AMI / f"{name}.wav") for name in GOOD]
    )
    segments = pq.read_table("secrets/out-env/segments", filesystem=corpus)
    assert segments_by_recording(segments) == {name: list(s) for name, s in zip(GOOD, in_process) if s}
