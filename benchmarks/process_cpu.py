"""Wall time and CPU-seconds of a command: the whole machine's (from /proc/stat, Ray's processes
included: run it alone), and per process title for the processes that started while it ran (sampled
every 0.3 s, so a process that lives less than that is missed).

    PYTHONPATH=. python benchmarks/process_cpu.py -- python -m pipeline diarize --manifest M --output O --model ge2e
    PYTHONPATH=. python benchmarks/process_cpu.py --top 0 -- python -m pytest -n 2 --dist loadfile tests/test_api.py
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import time

import psutil

from benchmarks.warm_workers import machine_cpu_seconds


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--top", type=int, default=15, help="process titles to list (0: none)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    born_after = time.time() - 1
    cpu, started = machine_cpu_seconds(), time.perf_counter()
    process = subprocess.Popen(command)
    seen: dict[tuple[int, float], tuple[str, float]] = {}
    while process.poll() is None:
        for p in psutil.process_iter(["pid", "create_time", "cmdline", "cpu_times"]):
            info = p.info
            if info["pid"] != os.getpid() and (info["create_time"] or 0) >= born_after and info["cpu_times"]:
                key = info["pid"], info["create_time"]
                # an ended process (a zombie) has no command line left: it keeps the title it had
                title = " ".join(info["cmdline"] or []).strip()[:80] or seen.get(key, ("(no title)", 0))[0]
                seen[key] = (title, info["cpu_times"].user + info["cpu_times"].system)
        time.sleep(0.3)
    wall, used = time.perf_counter() - started, machine_cpu_seconds() - cpu
    by_title = collections.Counter()
    for title, seconds in seen.values():
        by_title[title] += seconds
    for title, seconds in by_title.most_common(args.top or 0):
        print(f"{seconds:7.1f} CPU-s  {title}")
    print(f"exit {process.returncode}: {wall:.1f} s wall, {used:.1f} CPU-s on the machine")


if __name__ == "__main__":
    main()
