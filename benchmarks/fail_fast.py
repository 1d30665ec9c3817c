"""How fast a corpus run fails, and what its lease costs (issues 9 and 10).

    python benchmarks/fail_fast.py [--repeat 3]

Prints one JSON object: seconds from `python -m pipeline diarize ...` starting (a fresh process,
interpreter and imports included) to its one-line error, for each pre-flight mistake; and the
median milliseconds to take and give back an output lease, on a local folder and on moto's S3
server on loopback."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
AMI = REPO.parent / "shared" / "data" / "ami-excerpts"

CASES = {
    "missing_manifest": ["--manifest", "/nonexistent/manifest.jsonl"],  # the last --manifest wins
    "existing_output_without_resume": ["--output", "{folder}/existing"],
    "misspelt_option": ["--batchsize", "4"],
    "missing_postprocessing_preset": ["--postprocessing-yaml", "nemoo"],
    "batch_size_0": ["--batch-size", "0"],
    "num_actors_3,1": ["--num-actors", "3,1"],
    "unknown_model": ["--model", "no-such-model"],
    "unimportable_factory": ["--model", "no_such_package.models:build"],
    "misspelt_model_arg": ["--model-arg", "no_such_option=1"],
}


def cli_seconds(folder: Path, flags: list[str]) -> tuple[float, str]:
    manifest = folder / "manifest.jsonl"
    manifest.write_text(json.dumps({"audio_filepath": str(AMI / "trn02.wav")}) + "\n")
    (folder / "existing" / "recordings").mkdir(parents=True, exist_ok=True)
    (folder / "existing" / "recordings" / "part-earlier.parquet").write_bytes(b"")
    flags = [flag.format(folder=folder) for flag in flags]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    started = time.perf_counter()
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "diarize",
            "--manifest",
            str(manifest),
            "--output",
            str(folder / "out"),
            *flags,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    return time.perf_counter() - started, run.stderr.strip().splitlines()[-1]


def lease_milliseconds(output: str, options: dict | None, repeat: int) -> float:
    from pipeline.corpus.lease import OutputLease

    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        OutputLease(output, options).acquire().release()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    results: dict = {"cli_seconds_to_error": {}}
    with tempfile.TemporaryDirectory() as folder:
        for name, flags in CASES.items():
            runs = [cli_seconds(Path(folder), flags) for _ in range(args.repeat)]
            results["cli_seconds_to_error"][name] = {
                "median": round(statistics.median(s for s, _ in runs), 2),
                "max": round(max(s for s, _ in runs), 2),
                "error": runs[0][1],
            }
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import pipeline"], cwd=REPO, check=True)
        results["python_import_pipeline_seconds"] = round(time.perf_counter() - started, 2)
        results["lease_ms_local"] = round(lease_milliseconds(str(Path(folder) / "leased"), None, 20), 2)

    import boto3

    from benchmarks.loopback_s3 import loopback_s3

    with loopback_s3() as endpoint:
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="lease-bench")
        results["lease_ms_s3_moto"] = round(
            lease_milliseconds("s3://lease-bench/run", {"endpoint_url": endpoint}, 20), 2
        )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
