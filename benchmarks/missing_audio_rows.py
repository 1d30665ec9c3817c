"""Rows whose audio is missing and that give no duration (issue 27's "scale of failure"): how many
commits, how soon the first, the driver's peak RSS.

    PYTHONPATH=. python benchmarks/missing_audio_rows.py 20000 [WORKDIR]

An older commit: from a worktree of it, with this script copied in (PYTHONPATH=that worktree)."""

import json
import os
import resource
import shutil
import sys
import tempfile
import threading
import time

import ray

from pipeline.corpus import run_corpus

rows = int(sys.argv[1])
work = sys.argv[2] if len(sys.argv) > 2 else tempfile.mkdtemp(prefix="missing-rows-")
os.makedirs(work, exist_ok=True)
m = os.path.join(work, "manifest.jsonl")
with open(m, "w") as f:
    for i in range(rows):
        f.write(json.dumps({"audio_filepath": f"missing/{i}.wav"}) + "\n")
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
s = run_corpus([m], out, model="ge2e")
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
