"""`python -m pipeline manifest` on many files: wall time and the command's peak RSS.

    PYTHONPATH=. python benchmarks/audio_manifest_scale.py 200000          # local: empty files in 100 folders
    PYTHONPATH=. python benchmarks/audio_manifest_scale.py 10000 --s3      # on moto's S3 server on loopback

Half the recordings get an RTTM in a folder of their own (paired by name). The files are empty: the
command lists and names files, it never opens audio."""

from __future__ import annotations

import argparse
import contextlib
import gzip
import os
import resource
import subprocess
import sys
import tempfile
import time

from benchmarks.loopback_s3 import loopback_s3


def make_local(root: str, count: int) -> tuple[str, str]:
    audio, references = os.path.join(root, "audio"), os.path.join(root, "refs")
    os.makedirs(references)
    for folder in range(100):
        os.makedirs(os.path.join(audio, f"{folder:02d}"))
    for k in range(count):
        open(os.path.join(audio, f"{k % 100:02d}", f"r{k:07d}.wav"), "wb").close()
        if k % 2 == 0:
            open(os.path.join(references, f"r{k:07d}.rttm"), "wb").close()
    return audio, references


def make_s3(endpoint: str, count: int) -> tuple[str, str]:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket="corpus")
    for k in range(count):
        client.put_object(Bucket="corpus", Key=f"audio/{k % 100:02d}/r{k:07d}.wav", Body=b"")
        if k % 2 == 0:
            client.put_object(Bucket="corpus", Key=f"refs/r{k:07d}.rttm", Body=b"")
    return "s3://corpus/audio/", "s3://corpus/refs/"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("count", type=int)
    parser.add_argument("--s3", action="store_true")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="audio-manifest-")
    with loopback_s3() if args.s3 else contextlib.nullcontext() as endpoint:
        if endpoint:
            audio, references = make_s3(endpoint, args.count)
            output, where = "s3://corpus/manifest.jsonl.gz", ["--endpoint-url", endpoint]
        else:
            audio, references = make_local(root, args.count)
            output, where = os.path.join(root, "manifest.jsonl.gz"), []
        command = [
            sys.executable,
            "-m",
            "pipeline",
            "manifest",
            audio,
            "--rttm",
            references,
            "--output",
            output,
            *where,
        ]
        start = time.perf_counter()
        finished = subprocess.run(command, capture_output=True, text=True, check=True)
        seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(finished.stdout.strip().splitlines()[0])
    if not args.s3:
        with gzip.open(output, "rt") as f:
            assert sum(1 for _ in f) == args.count
    print(f"{args.count} files{' on S3' if args.s3 else ''}: {seconds:.1f} s, peak RSS {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
