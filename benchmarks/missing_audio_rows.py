"""Rows whose audio is missing and that give no duration (issue 27's "scale of failure"): how many
commits, how soon the first, the driver's peak RSS.

    PYTHONPATH=. python benchmarks/missing_audio_rows.py 20000 [WORKDIR]
    PYTHONPATH=. python benchmarks/missing_audio_rows.py 2000 --s3   # on moto's S3 server on loopback

With `--s3` the manifest and the audio paths are on S3 (an S3 API on 127.0.0.1, as the tests use):
a missing remote file is found by its decode task, not by the read (one request a row would be
the read's), so these rows travel with the labelled ones.

An older commit: from a worktree of it, with this script copied in (PYTHONPATH=that worktree)."""

import json
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from contextlib import ExitStack

import ray

from pipeline.corpus import run_corpus

on_s3 = "--s3" in sys.argv
arguments = [a for a in sys.argv[1:] if a != "--s3"]
rows = int(arguments[0])
work = arguments[1] if len(arguments) > 1 else tempfile.mkdtemp(prefix="missing-rows-")
os.makedirs(work, exist_ok=True)
lines = "".join(json.dumps({"audio_filepath": f"missing/{i}.wav"}) + "\n" for i in range(rows))
storage = {}
if on_s3:
    import s3fs

    from benchmarks.loopback_s3 import loopback_s3

    s3_server = ExitStack()  # the server runs until the script ends
    storage = {"endpoint_url": s3_server.enter_context(loopback_s3())}
    s3 = s3fs.S3FileSystem(**storage)
    s3.mkdir("bench")
    s3.pipe("bench/manifest.jsonl", lines.encode())
    m = "s3://bench/manifest.jsonl"
else:
    m = os.path.join(work, "manifest.jsonl")
    with open(m, "w") as f:
        f.write(lines)
out = os.path.join(work, "run")
shutil.rmtree(out, ignore_errors=True)
commits = []
stop = threading.Event()


def watch():
    seen = set()
    folder = os.path.join(out, "recordings")
    while not stop.is_set():
        names = set(os.listdir(folder)) if os.path.isdir(folder) else set()
        commits.extend(time.perf_counter() for _ in names - seen)
        seen |= names
        stop.wait(0.1)


ray.init(address="local", include_dashboard=False, log_to_driver=False)
threading.Thread(target=watch, daemon=True).start()
t = time.perf_counter()
s = run_corpus([m], out, model="ge2e", storage_options=storage)
e = time.perf_counter()
stop.set()
print(
    json.dumps(
        {
            "rows": rows,
            "errors": s["errors"],
            "wall": round(e - t, 1),
            "commits": len(commits),
            "first_commit": round(commits[0] - t, 1) if commits else None,
            "driver_max_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        }
    )
)
