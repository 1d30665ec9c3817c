"""GPUs requested where CUDA is unusable: the run fails loudly, naming the problem, and never labels
anything on the CPU instead. A fake GPU (`ray.init(num_gpus=1)`) makes Ray schedule the model actor
on a "GPU" and set `CUDA_VISIBLE_DEVICES`, while torch here has no CUDA device.

It runs in a subprocess: the fake GPU needs a Ray of its own, not the session's `local_ray`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

import pytest
from conftest import AMI, REPO, write_jsonl

FAKE_GPU_RUN = textwrap.dedent("""
    import sys
    import ray
    from pipeline.cli import main

    ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False)
    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.slow
def test_gpu_actor_without_cuda_fails_loudly_and_never_runs_on_cpu(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is usable here; this test needs a machine without it")
    manifest = write_jsonl(tmp_path / "manifest.jsonl", [{"audio_filepath": str(AMI / "trn02.wav"), "num_speakers": 1}])
    output = tmp_path / "output"
    ray_temp = tempfile.mkdtemp(prefix="rg", dir="/tmp")  # short: Ray's socket paths must fit
    try:
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env.update(
            RAY_TMPDIR=ray_temp, PATH=f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ.get('PATH', '')}"
        )
        command = [
            sys.executable,
            "-c",
            FAKE_GPU_RUN,
            "diarize",
            "--manifest",
            str(manifest),
            "--output",
            str(output),
            "--batch-size",
            "1",
            "--gpus-per-actor",
            "1",
        ]
        run = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    finally:
        shutil.rmtree(ray_temp, ignore_errors=True)

    assert run.returncode == 2, "no usable GPU is a user error: one line, exit 2\n" + run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith("error: GPUs were requested"), run.stderr
    assert "GPUs were requested for the model actors (--gpus-per-actor > 0) but CUDA is not usable" in run.stderr
    assert "refusing to fall back to CPU" in run.stderr
    assert "CUDA_VISIBLE_DEVICES='0'" in run.stderr, "Ray gave the actor its (fake) GPU"
    assert not list(output.glob("recordings/*.parquet")) and not list(output.glob("rttm/*.rttm")), (
        "nothing labelled on CPU"
    )
