"""Where a small corpus run's seconds go: the same one-file manifest run `--repeats` times in one
local Ray, then Ray's own timeline of the last run (tasks and actor methods: the model actor's
`__init__`, its forward, the decode and post-processing tasks), seconds from that run's start.

    PYTHONPATH=. python benchmarks/run_timeline.py --model ge2e
    PYTHONPATH=. python benchmarks/run_timeline.py --model default --preload pipeline.corpus.stages

`--preload` has Ray's workers import these modules as they start (Ray's `preload_python_modules`).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from benchmarks.data import ami_dir

# Ray's bookkeeping around every call and Ray Data's own actors, left out of the listing.
BOOKKEEPING = ("task:deserialize", "task:store_outputs", "task:execute", "submit_task")
RAY_DATA_ACTORS = ("Autoscaling", "ActorLocationTracker", "_StatsActor")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ge2e")
    parser.add_argument("--recording", default="trn02", help="an AMI excerpt")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--preload", default="", help="comma-separated modules Ray's workers import as they start")
    args = parser.parse_args()

    import ray

    import pipeline

    system_config = {"idle_worker_killing_time_threshold_ms": 60_000}  # as the test suite's Ray
    if args.preload:
        system_config["preload_python_modules"] = args.preload.split(",")
    ray.init(address="local", num_cpus=2, include_dashboard=False, _system_config=system_config)
    with tempfile.TemporaryDirectory() as folder:
        manifest = Path(folder) / "manifest.jsonl"
        manifest.write_text(json.dumps({"audio_filepath": str(ami_dir() / f"{args.recording}.wav")}) + "\n")
        for repeat in range(args.repeats):
            started = time.time()
            pipeline.run_corpus(str(manifest), f"{folder}/run{repeat}", model=args.model, batch_size=2)
            print(f"run {repeat + 1}: {time.time() - started:.2f} s", flush=True)
    events = [e for e in ray.timeline() if e.get("ph") == "X" and e.get("ts", 0) >= started * 1e6]
    for event in sorted(events, key=lambda e: e["ts"]):
        what = event.get("cat", "")  # "task::<stage or actor class>"
        if what.startswith(BOOKKEEPING) or any(actor in what for actor in RAY_DATA_ACTORS):
            continue
        at, lasted = (event["ts"] - started * 1e6) / 1e6, event.get("dur", 0) / 1e6
        print(f"{at:7.2f} s  +{lasted:5.2f} s  {what.removeprefix('task::')[:60]}  {event['name'].split('.')[-1]}")


if __name__ == "__main__":
    main()
