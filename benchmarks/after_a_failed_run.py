"""What a failed run leaves for the next one in the same session (a notebook, a test worker): the
CPUs its model actors still hold, and how long the next run then takes.

    PYTHONPATH=. python benchmarks/after_a_failed_run.py

On a Ray of 2 CPUs, `--failures` runs of a model that always fails (the energy plug-in of
tests/plugin_models.py) each stop with `ModelKeepsFailing`, and the last error is kept, as IPython
keeps `sys.last_value`; then the same manifest is labelled by `ge2e`. An older commit is measured by
the same script from a worktree of it (`git worktree add /tmp/old <commit>`, then `PYTHONPATH=/tmp/old`)."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from benchmarks.data import add_data_argument, ami_dir

FAILING_MODEL = "tests.plugin_models:energy_diarizer"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--failures", type=int, default=2, help="failed runs before the good one")
    add_data_argument(parser)
    args = parser.parse_args(argv)

    import ray

    import pipeline
    from pipeline.errors import ModelKeepsFailing

    ray.init(address="local", num_cpus=2, include_dashboard=False)
    folder = Path(tempfile.mkdtemp())
    rows = [
        {"audio_filepath": str(ami_dir() / f"trn0{i}.wav"), "offset": 5.0 * k, "duration": 5.0, "uniq_id": f"{i}-{k}"}
        for i in range(1, 4)
        for k in range(4)
    ]
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    kept = None
    for attempt in range(args.failures):
        try:
            pipeline.run_corpus(
                str(manifest), str(folder / f"failed{attempt}"), model=FAILING_MODEL, model_kwargs={"fail": "always"}
            )
        except ModelKeepsFailing as error:
            kept = error  # noqa: F841 (held, as a notebook holds its last error)
        time.sleep(2)  # an actor ends asynchronously
        print(f"after failed run {attempt + 1}: {ray.available_resources().get('CPU', 0.0)} of 2 CPUs free", flush=True)
    started = time.perf_counter()
    pipeline.run_corpus(str(manifest), str(folder / "good"), model="ge2e")
    print(f"the next run: {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
