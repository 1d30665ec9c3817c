"""The driver's memory between the phases of `run_corpus` on an all-error manifest (the benchmark's
`errors` corpus): where a large run's driver grows (docs/journal/2026-12-06-a-million-failing-rows.md).

    python -m benchmarks.driver_phases --rows 1000000 --output outputs/benchmarks/phases

Each phase function of `pipeline.corpus.plan` is wrapped, in this process only, to print the
driver's private memory and RSS (`/proc/self/smaps_rollup`) before and after it."""

from __future__ import annotations

import argparse
import functools
import os
import shutil


def driver_memory_mb() -> tuple[float, float]:
    """(private, RSS) of this process in MB."""
    fields = {}
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            name, _, value = line.partition(":")
            if value.strip().endswith("kB"):
                fields[name] = int(value.split()[0])
    return (fields["Private_Clean"] + fields["Private_Dirty"]) / 1024, fields["Rss"] / 1024


def reported(name: str, function):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        before = driver_memory_mb()
        result = function(*args, **kwargs)
        if hasattr(result, "materialize"):  # a lazy dataset: its work happens here
            result = result.materialize()
        after = driver_memory_mb()
        print(f"{name:22s} private {before[0]:7.1f} -> {after[0]:7.1f} MB   RSS {before[1]:7.1f} -> {after[1]:7.1f} MB")
        return result

    return wrapper


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--output", default="outputs/benchmarks/phases")
    args = parser.parse_args(argv)

    import ray

    from benchmarks.benchmark import all_error_manifest
    from pipeline.corpus import plan

    for name in ("assign_ids", "row_counts", "diarize_rows", "write_output_manifest", "run_summary"):
        setattr(plan, name, reported(name, getattr(plan, name)))
    os.makedirs(args.output, exist_ok=True)
    manifest = all_error_manifest(os.path.join(args.output, f"errors{args.rows}.jsonl"), args.rows)
    run_output = os.path.join(args.output, "run")
    shutil.rmtree(run_output, ignore_errors=True)
    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    print(f"{'start':22s} private {driver_memory_mb()[0]:7.1f} MB")
    summary = plan.run_corpus([manifest], run_output)
    print(f"{'end':22s} private {driver_memory_mb()[0]:7.1f} MB; {summary['errors']} error rows")


if __name__ == "__main__":
    main()
