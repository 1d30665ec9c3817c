"""Mistakes are found before any work, with one line naming the problem
(pipeline/corpus/preflight.py): bad options, an unknown model (before Ray starts), an output that
cannot be written (a missing bucket), GPUs the cluster does not have and cannot add, a bad collar.

"Before any work" is checked by what a refused run leaves behind, not by a clock (timings are
benchmarks' business and flake on a loaded CI machine): CLI cases run `python -m pipeline` in a
fresh process with a Ray temp folder of its own, which must stay empty, and the output must not
exist; the refused GPU request must leave no recordings and no lease in the output."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import pytest
from conftest import FAST_MODEL, REPO, ami_rows, with_absolute_paths, write_jsonl

from pipeline.errors import UsageError


@pytest.fixture
def manifest(tmp_path):
    return write_jsonl(tmp_path / "manifest.jsonl", [with_absolute_paths(r) for r in ami_rows("trn02")])


def cli(*arguments: str) -> subprocess.CompletedProcess:
    """Runs the CLI with a Ray temp folder of its own, and checks that no Ray was started in it, and
    that the mistake was told before torch or Ray were even imported (Python's import log, taken
    out of the stderr returned)."""
    with tempfile.TemporaryDirectory(prefix="rp", dir="/tmp") as ray_temp:
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env.update(RAY_TMPDIR=ray_temp, PYTHONPROFILEIMPORTTIME="1")
        run = subprocess.run(
            [sys.executable, "-m", "pipeline", *arguments],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert os.listdir(ray_temp) == [], "refused before Ray started"
    imported = {line.split("|")[-1].strip() for line in run.stderr.splitlines() if line.startswith("import time:")}
    assert not imported & {"torch", "ray"}, "refused before torch and Ray were imported"
    run.stderr = "".join(line for line in run.stderr.splitlines(True) if not line.startswith("import time:"))
    return run


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--batch-size", "0"], "--batch-size must be a whole number >= 1, got 0"),
        (["--max-num-speakers", "0"], "--max-num-speakers must be a whole number >= 1, got 0"),
        (
            ["--min-speakers", "3", "--max-num-speakers", "2"],
            "--min-num-speakers (3) is above --max-num-speakers (2)",  # one name per bound, NeMo's
        ),
        (["--num-actors", "3,1"], "--num-actors must be N >= 1 or MIN,MAX with 1 <= MIN <= MAX, got '3,1'"),
        (["--num-actors", "two"], "--num-actors must be N >= 1 or MIN,MAX with 1 <= MIN <= MAX, got 'two'"),
        (["--gpus-per-actor", "-1"], "--gpus-per-actor must be a number >= 0, got -1.0"),
        (["--model", "no-such-model"], "unknown model 'no-such-model'; available: ["),
        (
            ["--model", "no_such_package.models:build"],
            "model 'no_such_package.models:build': cannot import module 'no_such_package.models'",
        ),
        (
            ["--model", FAST_MODEL, "--model-arg", "no_such_option=1"],
            f"model '{FAST_MODEL}': no option(s) ['no_such_option']: the options are ['hop_vad_frames',",
        ),
        (
            ["--model", "default", "--model-arg", "precision=float8"],
            "precision='float8': use one of ['bfloat16', 'float16', 'float32']",
        ),
        (
            ["--model", "default", "--model-arg", "step_secs=5"],
            "model 'default': no option(s) ['step_secs']: the options are ['step_seconds',",
        ),
        (["--model", "default", "--model-arg", "step_seconds=-1"], "step_seconds=-1: must be a number from 0.1 to 10"),
        (
            ["--model", "default", "--model-arg", 'clustering={"thresh": 0.8}'],
            "clustering has no option(s) ['thresh']: use some of [",
        ),
    ],
    ids=[
        "batch_size_0",
        "max_speakers_0",
        "min_speakers_above_max",
        "num_actors_min_above_max",
        "num_actors_word",
        "negative_gpus",
        "unknown_model",
        "unimportable_factory",
        "unknown_model_arg",
        "bad_default_model_value",
        "unknown_default_model_arg",
        "default_model_value_out_of_range",
        "unknown_nested_default_model_arg",
    ],
)
def test_a_bad_option_fails_before_ray_with_one_line_and_writes_nothing(manifest, tmp_path, flags, message):
    output = tmp_path / "output"
    run = cli("diarize", "--manifest", str(manifest), "--output", str(output), *flags)
    assert run.returncode != 0
    assert message in last_line(run.stderr), run.stderr[-2000:]
    assert not output.exists(), "refused before the output was touched"


@pytest.mark.parametrize(
    "parameters, message",
    [
        ("onsett: 0.5", "unknown post-processing parameters ['onsett']; expected some of ["),
        ("onset: 5", "post-processing parameter onset=5: must be from 0 to 1 (a probability threshold)"),
        ("min_duration_on: -1", "post-processing parameter min_duration_on=-1: must be seconds >= 0"),
    ],
    ids=["misspelt", "onset_above_1", "negative_duration"],
)
def test_a_bad_postprocessing_yaml_fails_before_ray_with_one_line(manifest, tmp_path, parameters, message):
    yaml_path = tmp_path / "params.yaml"
    yaml_path.write_text(f"parameters:\n  {parameters}\n")
    output = tmp_path / "output"
    run = cli("diarize", "--manifest", str(manifest), "--output", str(output), "--postprocessing-yaml", str(yaml_path))
    assert run.returncode == 2 and message in last_line(run.stderr), run.stderr[-2000:]
    assert not output.exists(), "refused before the output was touched"


@pytest.mark.parametrize(
    "collar, message",
    [("-0.25", "--collar must be a number >= 0, got -0.25"), ("nan", "--collar must be a number >= 0, got nan")],
)
def test_a_bad_collar_fails_before_ray_with_one_line(tmp_path, collar, message):
    run = cli("evaluate", "--output", str(tmp_path), "--collar", collar)
    assert run.returncode != 0 and message in last_line(run.stderr), run.stderr[-2000:]


def usage_error(**kwargs) -> str:
    import pipeline

    with pytest.raises(UsageError) as refused:
        pipeline.run_corpus(**kwargs)
    return str(refused.value)


def test_a_missing_output_bucket_fails_before_any_work(local_ray, s3_endpoint, manifest):
    message = usage_error(
        manifests=str(manifest),
        output="s3://no-such-bucket/run1",
        storage_options={"endpoint_url": s3_endpoint},
        model=FAST_MODEL,
    )
    assert message == "cannot write to the output s3://no-such-bucket/run1: The specified bucket does not exist"


def test_gpus_that_the_cluster_does_not_have_are_refused_instead_of_waiting_forever(local_ray, manifest, tmp_path):
    output = tmp_path / "output"
    message = usage_error(manifests=str(manifest), output=str(output), model=FAST_MODEL, gpus_per_actor=1)
    assert message.startswith(
        "a model actor needs 1 GPU(s) and 0.5 CPU(s) (--gpus-per-actor, --actor-cpus); the cluster has 0 GPU(s)"
    )
    assert "no autoscaler that could add nodes; use --gpus-per-actor 0" in message and "\n" not in message
    assert not list(output.glob("recordings/*")) and not (output / "_lease.json").exists()


def test_more_actors_than_the_cluster_can_hold_are_refused(local_ray, manifest, tmp_path):
    message = usage_error(
        manifests=str(manifest), output=str(tmp_path / "output"), model=FAST_MODEL, actor_cpus=2, num_actors=2
    )
    assert message.startswith("--num-actors asks for at least 2 model actors but only 1 fit")


def test_a_corpus_run_s_driver_never_imports_torch(manifest, tmp_path, session_ray_address):
    """The stages reach Ray through `pipeline.corpus.workers`, so the driver of a whole run (options,
    plan, sink, summary) never loads torch: ~1.5 s less to start and ~0.3 GB less held."""
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    output = tmp_path / "output"
    arguments = ["diarize", "--manifest", str(manifest), "--output", str(output), "--model", "ge2e"]
    run = subprocess.run(
        [sys.executable, "-m", "pipeline", *arguments, "--address", session_ray_address],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    # Python's import log: on stderr until the run sends stderr to its log (OUTPUT/logs/), then there.
    log = run.stderr + "".join(path.read_text() for path in (output / "logs").iterdir())
    imported = {line.split("|")[-1].strip() for line in log.splitlines() if line.startswith("import time:")}
    assert {"ray", "pyarrow"} <= imported
    assert "torch" not in imported
    assert len(list((output / "rttm").glob("*.rttm"))) == 1
