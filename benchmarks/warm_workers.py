"""CPU and wall seconds of consecutive small corpus runs on one Ray, with Ray's idle-worker timeout
as given: what the test session's Ray (`tests/conftest.py::local_ray`) gains by keeping idle
workers, whose torch is imported and whose model is loaded, for the next test's run.

    PYTHONPATH=. python benchmarks/warm_workers.py --model default --idle-ms 1000
    PYTHONPATH=. python benchmarks/warm_workers.py --model default --idle-ms 60000

The machine's CPU seconds are read from /proc/stat (Ray's workers included): run it alone."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from benchmarks.data import add_data_argument, ami_dir


def machine_cpu_seconds() -> float:
    with open("/proc/stat") as f:
        values = list(map(int, f.readline().split()[1:]))
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--idle-ms", type=int, default=1000, help="Ray's idle_worker_killing_time_threshold_ms")
    parser.add_argument("--runs", type=int, default=5)
    add_data_argument(parser)
    args = parser.parse_args(argv)

    import ray

    import pipeline

    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        _system_config={"idle_worker_killing_time_threshold_ms": args.idle_ms},
    )
    ami = ami_dir()
    rows = [{"audio_filepath": str(ami / f"trn0{i}.wav"), "duration": 10.0} for i in range(1, 4)]
    warm_wall = warm_cpu = 0.0
    for run in range(args.runs):
        folder = tempfile.mkdtemp()
        manifest = Path(folder) / "manifest.jsonl"
        manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
        cpu, started = machine_cpu_seconds(), time.perf_counter()
        pipeline.run_corpus([str(manifest)], f"{folder}/output", model=args.model, batch_size=2)
        wall, used = time.perf_counter() - started, machine_cpu_seconds() - cpu
        if run:
            warm_wall, warm_cpu = warm_wall + wall, warm_cpu + used
        print(f"run {run}: {wall:.1f} s, {used:.1f} CPU-s", flush=True)
        time.sleep(3)  # what a test does between two runs
    warm = max(1, args.runs - 1)
    print(f"idle {args.idle_ms} ms, each run after the first: {warm_wall / warm:.1f} s, {warm_cpu / warm:.1f} CPU-s")


if __name__ == "__main__":
    main()
