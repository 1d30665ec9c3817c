"""Time and memory of corpus-wide speaker linking on synthetic centroids (`pipeline.linking.algorithm`).

    python benchmarks/link_speakers.py --centroids 10000 1000000            # the algorithm on Ray
    python benchmarks/link_speakers.py --centroids 10000 --mode run       # a whole `link_run` on a synthetic run folder

Centroids come from `benchmarks.synthetic_speakers` (256 dimensions like GE2E; one speaker per 10
centroids on average, Zipf popularity, so a few "hosts" recur in tens of thousands of recordings
and most voices in one or two; 2-4 speakers per recording). `algorithm` times `link_centroids`
with a local Ray; `run` writes a run folder (recordings/, segments/, speakers/ parts of 1,000
recordings) and times `link_run` (reading the table, linking, every global RTTM, the tables), then
adds 10 % more recordings and times the incremental relink.

Memory, sampled every 0.5 s while linking: the driver's RSS (before and peak; the centroids
themselves, 1 KB each, are in "before") and the proportional set size (PSS: shared pages such as
Ray's object store counted once) summed over the driver and every Ray process. Generating the
centroids is neither timed nor sampled."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.synthetic_speakers import purity_coverage, synthetic_centroids  # noqa: E402


class MemorySampler:
    """Peak PSS of this process and all its descendants (Ray's GCS, raylet, workers)."""

    def __init__(self, interval: float = 0.5):
        import psutil

        self.process = psutil.Process()
        self.interval = interval
        self.peak = 0
        self.driver_peak = 0  # this process's RSS, sampled (getrusage's peak would include the data generation)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        import psutil

        total = 0
        try:
            self.driver_peak = max(self.driver_peak, self.process.memory_info().rss)
        except Exception:  # noqa: BLE001
            pass
        for process in [self.process, *self.process.children(recursive=True)]:
            try:
                total += process.memory_full_info().pss
            except (psutil.Error, AttributeError):
                pass
        return total

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self._sample())

    def __enter__(self):
        self.peak = self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._sample())


def violations(labels, recordings) -> int:
    pairs = Counter(zip(labels.tolist(), recordings.tolist()))
    return sum(count > 1 for (g, _), count in pairs.items() if g >= 0)


def bench_algorithm(n: int, threshold: float, seed: int) -> dict:
    from pipeline.linking.algorithm import link_centroids

    data = synthetic_centroids(n, max(1, n // 10), seed=seed)
    import psutil

    before = psutil.Process().memory_info().rss
    with MemorySampler() as memory:
        started = time.perf_counter()
        result = link_centroids(data.centroids, data.recordings, threshold, use_ray=True)
        seconds = time.perf_counter() - started
    purity, coverage = purity_coverage(result.labels, data.speakers)
    return {
        "mode": "algorithm",
        "centroids": n,
        "true_speakers": int(len(np.unique(data.speakers))),
        "global_speakers": int(result.labels.max() + 1),
        "seconds": round(seconds, 1),
        "driver_rss_before_gb": round(before / 2**30, 2),
        "driver_peak_rss_gb": round(memory.driver_peak / 2**30, 2),
        "peak_pss_gb": round(memory.peak / 2**30, 2),
        "purity": round(purity, 4),
        "coverage": round(coverage, 4),
        "violations": violations(result.labels, data.recordings),
        "rounds": result.rounds,
    }


def write_synthetic_run(folder: str, data, recordings: np.ndarray, per_part: int = 1000) -> None:
    """recordings/, segments/ and speakers/ parts for the given recordings (one turn per speaker)."""
    import uuid

    import pyarrow as pa

    from pipeline.corpus.outputs import OutputLayout
    from pipeline.corpus.tables import RECORDINGS_SCHEMA, SEGMENTS_SCHEMA, speakers_schema

    layout = OutputLayout(folder)
    dim = data.centroids.shape[1]
    order = np.argsort(data.recordings, kind="stable")
    bounds = np.searchsorted(data.recordings[order], np.arange(data.recordings.max() + 2))
    for start in range(0, len(recordings), per_part):
        part = recordings[start : start + per_part]
        rows = np.concatenate([order[bounds[r] : bounds[r + 1]] for r in part])
        uniq = [f"rec{data.recordings[i]:07d}" for i in rows]
        speaker = [f"speaker_{i - bounds[data.recordings[i]]}" for i in rows]
        token = uuid.uuid4().hex
        slot = np.array([i - bounds[data.recordings[i]] for i in rows], dtype=np.float64)
        segments = pa.table(
            {
                "uniq_id": uniq,
                "audio_filepath": [f"/audio/{u}.wav" for u in uniq],
                "speaker": speaker,
                "start": slot * 60.0,
                "end": slot * 60.0 + np.minimum(data.speech_seconds[rows], 59.0),
                "duration": np.minimum(data.speech_seconds[rows], 59.0),
                "model": ["synthetic"] * len(rows),
            },
            schema=SEGMENTS_SCHEMA,
        )
        speakers = pa.table(
            {
                "uniq_id": uniq,
                "speaker": speaker,
                "speech_seconds": np.minimum(data.speech_seconds[rows], 59.0),
                "num_embeddings": np.full(len(rows), 50, np.int64),
                "centroid": pa.FixedSizeListArray.from_arrays(pa.array(data.centroids[rows].reshape(-1)), dim),
                "model": ["synthetic"] * len(rows),
            },
            schema=speakers_schema(dim),
        )
        ids = [f"rec{r:07d}" for r in part]
        recordings_table = pa.table(
            {
                "uniq_id": ids,
                "audio_filepath": [f"/audio/{u}.wav" for u in ids],
                "manifest": ["m.jsonl"] * len(ids),
                "line_number": np.asarray(part, np.int64),
                "duration": np.full(len(ids), 240.0),
                "num_speakers": np.full(len(ids), 3, np.int64),
                "speech_seconds": np.full(len(ids), 200.0),
                "status": ["ok"] * len(ids),
                "error": pa.nulls(len(ids), pa.string()),
                "processing_seconds": np.zeros(len(ids)),
                "model": ["synthetic"] * len(ids),
                "row_key": ids,
                "manifest_row": ["{}"] * len(ids),
            },
            schema=RECORDINGS_SCHEMA,
        )
        layout.write_part("segments", token, segments)
        layout.write_part("speakers", token, speakers)
        layout.write_part("recordings", token, recordings_table)


def bench_run(n: int, threshold: float, seed: int) -> dict:
    from pipeline.linking.run import link_run

    data = synthetic_centroids(n, max(1, n // 10), seed=seed)
    recordings = np.arange(data.recordings.max() + 1)
    grown = int(len(recordings) * 10 / 11)
    with tempfile.TemporaryDirectory() as folder:
        write_synthetic_run(folder, data, recordings[:grown])
        with MemorySampler() as memory:
            started = time.perf_counter()
            first = link_run(folder, threshold=threshold, min_speech_seconds=2.0)
            seconds = time.perf_counter() - started
        write_synthetic_run(folder, data, recordings[grown:])
        started = time.perf_counter()
        second = link_run(folder, threshold=threshold, min_speech_seconds=2.0)
        incremental = time.perf_counter() - started
    return {
        "mode": "run",
        "centroids": first["speakers"],
        "recordings": first["recordings"],
        "seconds": round(seconds, 1),
        "driver_peak_rss_gb": round(memory.driver_peak / 2**30, 2),
        "peak_pss_gb": round(memory.peak / 2**30, 2),
        "global_speakers": first["global_speakers"],
        "global_rttms_written": first["global_rttms_written"],
        "incremental": {
            "added_centroids": second["speakers"] - first["speakers"],
            "seconds": round(incremental, 1),
            "global_rttms_written": second["global_rttms_written"],
            "attached_to_existing": second["attached_to_existing"],
            "kept_links": second["kept_links"],
        },
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--centroids", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--mode", choices=["algorithm", "run"], default="algorithm")
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", default=None, help="append the results as JSON lines to this file")
    args = parser.parse_args(argv)

    import ray

    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    print(f"{os.cpu_count()} CPUs, Ray {ray.__version__}", flush=True)
    for n in args.centroids:
        result = (bench_algorithm if args.mode == "algorithm" else bench_run)(n, args.threshold, args.seed)
        print(json.dumps(result), flush=True)
        if args.json:
            with open(args.json, "a", encoding="utf-8") as f:
                f.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
