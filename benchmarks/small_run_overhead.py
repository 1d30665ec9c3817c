"""The fixed cost of a corpus run: the same one-file manifest run `--repeats` times in one local
Ray (the first run also pays for starting workers), with the driver's time in each step of
`run_corpus`. What a Jupyter user pays per small trial run, and most of what the test suite pays.

    python benchmarks/small_run_overhead.py --model ge2e --repeats 3
    python benchmarks/small_run_overhead.py --model ge2e --timeline     # + Ray's timeline of the last run
    python benchmarks/small_run_overhead.py --model ge2e --timeline --preload pipeline.corpus.stages
    PYTHONPATH=. python benchmarks/small_run_overhead.py --model ge2e --resume     # + a resume of each run
    RAY_DATA_PARQUET_FOOTER_NUM_ACTORS=32 PYTHONPATH=. python benchmarks/small_run_overhead.py --model ge2e --resume

`--timeline` lists the last run's tasks and actor methods (the model actor's `__init__`, its forward,
the decode and post-processing tasks), seconds from that run's start; `--preload` has Ray's workers
import these modules as they start (Ray's `preload_python_modules`). `--resume` resumes each finished
run once (it has nothing left to do: what every resume pays before its first row); `run_cpu_s` and
`resume_cpu_s` are the whole machine's CPU-seconds (/proc/stat, Ray's processes included: run it alone).
A resume reads the run's parts on one footer-reading actor (`pipeline.corpus.outputs.footer_readers_for`);
`RAY_DATA_PARQUET_FOOTER_NUM_ACTORS=32` gives Ray Data's own pool, as before that.

An older commit is measured by the same script from a worktree of it, on that worktree's code:
    git worktree add /tmp/old 6cd016e && cp benchmarks/small_run_overhead.py /tmp/old/benchmarks/
    (cd /tmp/old &&
     PYTHONPATH=/tmp/old python benchmarks/small_run_overhead.py --ami "$OLDPWD/../shared/data/ami-excerpts")
"""

from __future__ import annotations

import argparse
import functools
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

AMI = Path(__file__).resolve().parents[2] / "shared" / "data" / "ami-excerpts"
# Timed steps of run_corpus. `read_inputs` and `assign_ids` only build lazy datasets: their Ray work
# (reading, the id groupby) runs in run_corpus's own `materialize()` calls, reported as "rest".
STEPS = ("row_counts", "diarize_rows", "write_output_manifest", "run_summary")
# Ray's bookkeeping around every call and Ray Data's own actors, left out of the timeline.
BOOKKEEPING = ("task:deserialize", "task:store_outputs", "task:execute", "submit_task")
RAY_DATA_ACTORS = ("Autoscaling", "ActorLocationTracker", "_StatsActor")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ge2e")
    parser.add_argument("--recording", default="trn02", help="an AMI excerpt of --ami")
    parser.add_argument(
        "--ami", type=Path, default=AMI, help="the AMI excerpts folder (default: ../shared/data/ami-excerpts)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeline", action="store_true", help="print Ray's timeline of the last run")
    parser.add_argument("--preload", default="", help="comma-separated modules Ray's workers import as they start")
    parser.add_argument("--resume", action="store_true", help="also time a resume of each finished run")
    args = parser.parse_args()

    import ray

    import pipeline
    import pipeline.corpus.plan as plan
    from benchmarks.warm_workers import machine_cpu_seconds

    seconds: dict[str, list[float]] = defaultdict(list)
    steps_of = {"run": seconds, "resume": defaultdict(list)}  # the steps are reported for the runs only
    timing = "run"

    def timed(name):
        step = getattr(plan, name)

        @functools.wraps(step)
        def wrapper(*a, **k):
            began = time.perf_counter()
            try:
                return step(*a, **k)
            finally:
                steps_of[timing][name].append(time.perf_counter() - began)

        return wrapper

    for name in STEPS:
        setattr(plan, name, timed(name))  # run_corpus looks them up in the module at call time
    preload = {"preload_python_modules": args.preload.split(",")} if args.preload else {}
    ray.init(address="local", num_cpus=2, include_dashboard=False, _system_config=preload)
    rows = [
        json.loads(line)
        for line in (args.ami / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    row = next(r for r in rows if Path(r["audio_filepath"]).stem == args.recording)
    row = {k: str(args.ami / v) if k.endswith("_filepath") and v else v for k, v in row.items()}
    with tempfile.TemporaryDirectory() as folder:
        manifest = Path(folder) / "manifest.jsonl"
        manifest.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
        for repeat in range(args.repeats):
            began, last_start, cpu = time.perf_counter(), time.time(), machine_cpu_seconds()
            pipeline.run_corpus(str(manifest), f"{folder}/run{repeat}", model=args.model, batch_size=2)
            seconds["run_corpus"].append(time.perf_counter() - began)
            seconds["run_cpu_s"].append(machine_cpu_seconds() - cpu)
            if args.resume:
                timing, began, cpu = "resume", time.perf_counter(), machine_cpu_seconds()
                pipeline.run_corpus(str(manifest), f"{folder}/run{repeat}", model=args.model, batch_size=2, resume=True)
                seconds["resume"].append(time.perf_counter() - began)
                seconds["resume_cpu_s"].append(machine_cpu_seconds() - cpu)
                timing = "run"
    runs = len(seconds["run_corpus"])
    seconds["rest"] = [seconds["run_corpus"][i] - sum(seconds[name][i] for name in STEPS) for i in range(runs)]
    print(json.dumps({name: [round(s, 2) for s in values] for name, values in seconds.items()}))
    if args.timeline:
        print_timeline(ray.timeline(), since=last_start)


def print_timeline(events: list[dict], since: float) -> None:
    """Ray's timeline events (Chrome trace, microseconds) from `since` (epoch seconds) on."""
    for event in sorted(
        (e for e in events if e.get("ph") == "X" and e.get("ts", 0) >= since * 1e6), key=lambda e: e["ts"]
    ):
        what = event.get("cat", "")  # "task::<stage or actor class>"
        if what.startswith(BOOKKEEPING) or any(actor in what for actor in RAY_DATA_ACTORS):
            continue
        at, lasted = event["ts"] / 1e6 - since, event.get("dur", 0) / 1e6
        print(f"{at:7.2f} s  +{lasted:5.2f} s  {what.removeprefix('task::')[:60]}  {event['name'].split('.')[-1]}")


if __name__ == "__main__":
    main()
