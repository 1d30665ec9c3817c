"""Model forwards side by side on shared cores, by OpenMP wait policy: what two pytest-xdist workers'
model actors (two threads each on two cores) pay when torch's OpenMP threads spin at a barrier for
a sibling the kernel has descheduled.

    python benchmarks/openmp_contention.py --model ge2e --processes 1 2
    python benchmarks/openmp_contention.py --model default --processes 2 --policy default PASSIVE spin1000

Each process loads the model, warms it up on one AMI excerpt, then times `--repeats` forwards of it
(`--threads` torch threads); the processes start together. `default` leaves libgomp's spin as it is,
`PASSIVE` sets OMP_WAIT_POLICY=PASSIVE, `spinN` GOMP_SPINCOUNT=N. Prints each process's wall and CPU
seconds as JSON lines. Run it alone: it measures contention, so anything else running is part of it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from benchmarks.data import ami_dir

CHILD = """
import sys, time, torch
from pipeline import load_model
from pipeline.io.audio import decode_audio
from pipeline.models.contract import Recording, RecordingBatch
model_name, repeats, threads, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
torch.set_num_threads(threads)
model = load_model(model_name, device="cpu")
batch = RecordingBatch.collate([Recording("x", decode_audio(path), 0.0, 0)])
model._diarize_forward(batch)
started, cpu = time.perf_counter(), time.process_time()
for _ in range(repeats):
    model._diarize_forward(batch)
print(time.perf_counter() - started, time.process_time() - cpu)
"""


def policy_env(policy: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    if policy == "PASSIVE":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    elif policy.startswith("spin"):
        env["GOMP_SPINCOUNT"] = policy[len("spin") :]
    elif policy != "default":
        raise SystemExit(f"--policy {policy!r}: default, PASSIVE or spinN")
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ge2e")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--policy", nargs="+", default=["default", "PASSIVE"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--audio", default=str(ami_dir() / "trn05.wav"))
    args = parser.parse_args()
    for policy in args.policy:
        for count in args.processes:
            command = [sys.executable, "-c", CHILD, args.model, str(args.repeats), str(args.threads), args.audio]
            started = time.perf_counter()
            children = [
                subprocess.Popen(command, env=policy_env(policy), stdout=subprocess.PIPE, text=True)
                for _ in range(count)
            ]
            timings = [tuple(map(float, child.communicate()[0].split())) for child in children]
            print(
                json.dumps(
                    {
                        "model": args.model,
                        "policy": policy,
                        "processes": count,
                        "threads": args.threads,
                        "forwards": args.repeats,
                        "wall_s": [round(wall, 2) for wall, _ in timings],
                        "cpu_s": [round(cpu, 2) for _, cpu in timings],
                        "elapsed_s": round(time.perf_counter() - started, 1),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
