"""In-process measurements of a model: accuracy (DER on a manifest with references) and real-time
factor split into VAD, embeddings and clustering. The figures in docs/RESULTS.md come from here:

    python -m benchmarks.benchmark accuracy --split test --model default   # AMI + simulated, known and estimated counts
    python -m benchmarks.benchmark accuracy --manifest ../shared/data/ami-excerpts/manifest.jsonl \
        --postprocessing-yaml pipeline/conf/far_field.yaml --estimate-speakers
    python -m benchmarks.benchmark rtf --manifest SIMULATED/manifest.jsonl --model default   # or --model ge2e
    python -m benchmarks.benchmark corpus --manifest SIMULATED/manifest.jsonl --compare-in-process
    python -m benchmarks.benchmark manifests --rows 1000000 --output outputs/benchmarks/manifests
    python -m benchmarks.benchmark errors --rows 200000 --output outputs/benchmarks/errors
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from contextlib import contextmanager
from dataclasses import replace

import torch

from benchmarks.data import add_data_argument, ami_dir
from pipeline.config import DiarizeConfig, InternalDiarizeConfig
from pipeline.io.audio import audio_info
from pipeline.io.dataset import DiarizationDataset
from pipeline.io.manifest import read_manifest
from pipeline.io.rttm import parse_segment
from pipeline.models.contract import RecordingBatch, move_to_device
from pipeline.models.registry import load_model


def diarize_and_score(
    manifest: str,
    model=None,
    postprocessing_yaml: str | None = None,
    estimate_speakers: bool = False,
    collar: float = 0.25,
    batch_size: int = 4,
):
    """DER of `model.diarize()` on a manifest whose rows name reference RTTMs. With
    `estimate_speakers` the rows' `num_speakers` are hidden from the model."""
    model = model or load_model("default", device="cpu")
    rows = read_manifest(manifest)
    if estimate_speakers:
        rows = [replace(row, num_speakers=None) for row in rows]
    loader = torch.utils.data.DataLoader(
        DiarizationDataset(rows), batch_size=batch_size, collate_fn=RecordingBatch.collate
    )
    segments = model.diarize(loader, postprocessing_yaml=postprocessing_yaml)
    from pipeline.scoring.metrics import score_rows  # pyannote.metrics: only where something is scored

    hypotheses = {row.uniq_id: [parse_segment(s) for s in segs] for row, segs in zip(rows, segments)}
    return score_rows(rows, hypotheses, collar=collar)


SPLIT_COLUMNS = ("der", "missed_speech", "false_alarm", "confusion", "jer")


def split_accuracy(
    split: str,
    model_name: str = "default",
    postprocessing_yaml: str | None = None,
    dest_dir: str = "outputs/benchmarks/splits",
    model_kwargs: dict | None = None,
) -> list[dict]:
    """One row per (corpus, speaker count) of a split: AMI excerpts, simulated conversations and
    short simulated calls (see `benchmarks.splits`), with the manifests' counts and with counts
    estimated by the model."""
    from benchmarks.splits import split_manifests

    model = load_model(model_name, device="cpu", **(model_kwargs or {}))
    manifests = split_manifests(split, dest_dir)
    rows = []
    for corpus, manifest in manifests.items():
        for estimate in (False, True):
            began = time.perf_counter()
            _, overall = diarize_and_score(manifest, model, postprocessing_yaml, estimate_speakers=estimate)
            rows.append(
                {
                    "split": split,
                    "corpus": corpus,
                    "model": model_name,
                    "count": "estimated" if estimate else "known",
                    **overall,
                    "wall_seconds": time.perf_counter() - began,
                }
            )
    return rows


def split_table(rows: list[dict]) -> str:
    """Markdown rows for docs/RESULTS.md."""
    lines = [
        "| split | corpus | model | count | DER | missed | false alarm | confusion | JER | count right |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        figures = " | ".join(f"{100 * row[name]:.1f} %" for name in SPLIT_COLUMNS)
        right = round(row["speaker_count_accuracy"] * row["recordings"])
        lines.append(
            f"| {row['split']} | {row['corpus']} | {row['model']} | {row['count']} "
            f"| {figures} | {right} / {row['recordings']} |"
        )
    return "\n".join(lines)


# The forward methods whose time each built-in model reports as its own stage; the rest of the
# forward pass (VAD, chunk cutting, copies) is "forward (rest)".
FORWARD_STAGES = {
    "OverlapAwareDiarizer": {"_segment": "segmentation", "_embed_local_speakers": "embeddings (fbank + CAM++)"},
    "GE2EDiarizer": {"_embed_windows": "embeddings (mel + GE2E)"},
}


def synchronize() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


@contextmanager
def timed_methods(model, stages: dict[str, str], timings: dict[str, float]):
    """Wrap the model's methods named in `stages` so that their wall time adds up in `timings`."""

    def timed(method, stage):
        def wrapper(*args, **kwargs):
            synchronize()
            began = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                synchronize()  # CUDA kernels run asynchronously: a stage ends when its kernels do
                timings[stage] += time.perf_counter() - began

        return wrapper

    for name, stage in stages.items():
        timings.setdefault(stage, 0.0)
        setattr(model, name, timed(getattr(model, name), stage))
    try:
        yield
    finally:
        for name in stages:
            delattr(model, name)


def real_time_factor(manifest: str, model=None, batch_size: int = 4) -> dict:
    """Wall time / audio time of a model (weights loaded, audio decoded beforehand), split into its
    forward stages (`FORWARD_STAGES`) and post-processing (clustering + turns)."""
    model = model or load_model("default", device="cpu")
    rows = read_manifest(manifest)
    dataset = DiarizationDataset(rows)
    items = [dataset[i] for i in range(len(dataset))]
    audio_seconds = sum(len(item.audio) for item in items) / 16_000
    device = next(model.parameters()).device if isinstance(model, torch.nn.Module) else torch.device("cpu")
    config = DiarizeConfig(_internal=InternalDiarizeConfig())
    stages = FORWARD_STAGES.get(type(model).__name__, {})
    timings: dict[str, float] = {}
    forward = post = 0.0
    segments = 0
    with torch.inference_mode(), timed_methods(model, stages, timings):
        for start in range(0, len(items), batch_size):
            batch = RecordingBatch.collate(items[start : start + batch_size])
            began = time.perf_counter()
            outputs = model._diarize_forward(move_to_device(batch, device))  # the copy to a GPU counts
            forward += time.perf_counter() - began
            began = time.perf_counter()
            segments += sum(map(len, model._diarize_output_processing(outputs, batch["uniq_ids"], config)))
            post += time.perf_counter() - began
    timings["forward (rest)"] = max(forward - sum(timings.values()), 0.0)
    timings["post-processing (clustering, turns)"] = post
    total = forward + post
    return {
        "model": type(model).__name__,
        "audio_seconds": audio_seconds,
        "wall_seconds": total,
        "rtf": total / audio_seconds,
        "rtf_by_stage": {name: seconds / audio_seconds for name, seconds in timings.items()},
        "threads": torch.get_num_threads(),
        "batch_size": batch_size,
        "segments_found": segments,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


class PeakMemory:
    """Peak resident memory of this process (the driver) and of Ray's worker processes, sampled
    from a background thread (psutil ships with Ray)."""

    def __init__(self, interval: float = 0.25):
        import threading

        self.interval, self.driver, self.driver_private, self.workers = interval, 0, 0, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        import os

        import psutil

        me = psutil.Process(os.getpid())
        while not self._stop.is_set():
            info = me.memory_info()
            self.driver = max(self.driver, info.rss)
            # Pages of Ray's object store that the driver reads are shared memory mapped into it:
            # they count in its RSS but are not the driver's own.
            self.driver_private = max(self.driver_private, info.rss - info.shared)
            for process in psutil.process_iter(["name", "cmdline"]):
                try:
                    name = " ".join(process.info["cmdline"] or [])
                    if name.startswith("ray::"):
                        key = "model actor" if "MapWorker" in name else name.split("(")[0].split()[0].split(".")[0]
                        self.workers[key] = max(self.workers.get(key, 0), process.memory_info().rss)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def report(self) -> dict:
        gib = 2**30
        return {
            "driver_peak_gib": self.driver / gib,
            "driver_peak_private_gib": self.driver_private / gib,
            "worker_peak_gib": {k: v / gib for k, v in sorted(self.workers.items())},
        }


def corpus_throughput(manifest: str, output: str, compare_in_process: bool, **run_options) -> dict:
    """Audio seconds per wall second of `run_corpus` and, when asked, of a plain in-process loop of
    `model.diarize()` over the same files, in one process on the same cores."""
    import shutil

    from pipeline.corpus import run_corpus

    result: dict = {}
    expected: dict[str, list[str]] = {}
    if compare_in_process:
        model = load_model(run_options.get("model", "default"), device="cpu")
        rows = read_manifest(manifest)
        began = time.perf_counter()
        for row in rows:
            (segments,) = model.diarize(_one_row_manifest(row), num_workers=0)
            expected[row.uniq_id] = list(segments)
        wall = time.perf_counter() - began
        audio = sum(row.duration or audio_info(row.audio_filepath).duration for row in rows)
        result["in_process"] = {
            "audio_seconds": audio,
            "wall_seconds": wall,
            "audio_seconds_per_wall_second": audio / wall,
        }
    shutil.rmtree(output, ignore_errors=True)
    with PeakMemory() as memory:
        summary = run_corpus([manifest], output, **run_options)
    result["ray"] = {
        "rows": summary["input_rows"],
        "ok": summary["ok"],
        "errors": summary["errors"],
        "audio_seconds": summary["audio_hours"] * 3600,
        "wall_seconds": summary["wall_seconds"],
        "audio_seconds_per_wall_second": summary["audio_seconds_per_wall_second"],
        **memory.report(),
    }
    if compare_in_process:
        result["ray_over_in_process"] = (
            result["ray"]["audio_seconds_per_wall_second"] / result["in_process"]["audio_seconds_per_wall_second"]
        )
        from pipeline.corpus.outputs import OutputLayout

        found: dict[str, list[str]] = {uid: [] for uid in expected}
        for turn in OutputLayout(output).read_table("segments").to_pylist():
            found.setdefault(turn["uniq_id"], []).append(f"{turn['start']:.3f} {turn['end']:.3f} {turn['speaker']}")
        differing = sorted(uid for uid in found if found[uid] != expected.get(uid))
        result["segments_identical_to_in_process"] = {
            "rows": len(expected),
            "differing_rows": len(differing),
            "examples": differing[:5],
        }
    return result


def sliced_manifest(manifest: str, rows: int, slice_seconds: float, path: str) -> str:
    """A manifest of `rows` rows, each a `slice_seconds` slice of the files of `manifest`, cycling
    through files and offsets: a corpus of any row count from a few files (memory benchmarks)."""
    from pipeline.io.manifest import ManifestRow, write_manifest

    sources = [(row.audio_filepath, audio_info(row.audio_filepath).duration) for row in read_manifest(manifest)]
    sliced = []
    for index in range(rows):
        audio, duration = sources[index % len(sources)]
        slots = max(1, int(duration // slice_seconds))
        offset = ((index // len(sources)) % slots) * slice_seconds
        sliced.append(
            ManifestRow(audio, uniq_id="", offset=offset, duration=slice_seconds).to_json() | {"uniq_id": None}
        )
    write_manifest(path, sliced)
    return path


def generated_manifest(path: str, rows: int, error_every: int = 0, slice_seconds: float = 5.0) -> str:
    """A manifest of `rows` slices of the AMI excerpts in ../shared/data (existing audio, so a dry run
    checks real files), streamed to `path`; with `error_every` k, every k-th line is a missing file
    and every k-th + 1 bad JSON."""

    ami = ami_dir()
    files = sorted(str(p) for p in ami.glob("trn0*.wav"))
    slots = 6  # 5-s slices of the first 30 s of each file
    with open(path, "w", encoding="utf-8") as f:
        for index in range(rows):
            if error_every and index % error_every == 0:
                f.write(json.dumps({"audio_filepath": f"missing/{index}.wav", "duration": slice_seconds}) + "\n")
            elif error_every and index % error_every == 1:
                f.write('{"audio_filepath": broken\n')
            else:
                audio = files[index % len(files)]
                offset = ((index // len(files)) % slots) * slice_seconds
                f.write(json.dumps({"audio_filepath": audio, "offset": offset, "duration": slice_seconds}) + "\n")
    return path


def write_finished_records(manifest: str, output: str) -> None:
    """The `recordings` of a finished run of `manifest` (every row ok), committed per block by Ray
    tasks exactly as the sink commits them, without diarizing (and without RTTMs): what a `--resume`
    of a finished run reads back."""
    import uuid

    import pyarrow as pa

    from pipeline.corpus.inputs import assign_ids, read_inputs
    from pipeline.corpus.outputs import OutputLayout
    from pipeline.corpus.tables import recordings_table

    layout = OutputLayout(output)

    def commit(batch: pa.Table) -> pa.Table:
        rows = [{**row, "audio_seconds": row["slice_duration"], "segments": ""} for row in batch.to_pylist()]
        layout.write_part("recordings", uuid.uuid4().hex, recordings_table(rows, "default"))
        return pa.table({"rows": [len(rows)]})

    parsed = read_inputs([manifest]).materialize()
    assign_ids(parsed, parsed.count()).map_batches(commit, batch_format="pyarrow", batch_size=20_000).materialize()


def manifest_scale(rows: int, output: str, error_every: int = 0) -> dict:
    """Driver peak memory and rows per second of reading + ids, of a dry run, and of `--resume` of a
    finished run, over a generated manifest of `rows` rows."""
    import os
    import shutil

    import ray

    from pipeline.corpus import run_corpus
    from pipeline.corpus.inputs import assign_ids, read_inputs

    os.makedirs(output, exist_ok=True)
    manifest = generated_manifest(os.path.join(output, f"rows{rows}.jsonl"), rows, error_every)
    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    result: dict = {"rows": rows}
    with PeakMemory() as memory:
        began = time.perf_counter()
        parsed = read_inputs([manifest]).materialize()
        read = time.perf_counter() - began
        count = parsed.count()
        assigned = assign_ids(parsed, count).materialize().count()
        ids = time.perf_counter() - began - read
    result["read_and_ids"] = {
        "rows": count,
        "assigned": assigned,
        "read_rows_per_second": count / read,
        "ids_rows_per_second": count / ids,
        "seconds": read + ids,
        **memory.report(),
    }
    del parsed
    with PeakMemory() as memory:
        began = time.perf_counter()
        report = run_corpus([manifest], os.path.join(output, "dry-run-output"), dry_run=True)
        result["dry_run"] = {
            "seconds": time.perf_counter() - began,
            "ok": report["ok"],
            "errors": report["errors"],
            "audio_hours": report["audio_hours"],
            **memory.report(),
        }
    finished = os.path.join(output, "finished")
    shutil.rmtree(finished, ignore_errors=True)
    write_finished_records(manifest, finished)
    with PeakMemory() as memory:
        began = time.perf_counter()
        summary = run_corpus([manifest], finished, resume=True)
        result["resume_of_finished_run"] = {
            "seconds": time.perf_counter() - began,
            "skipped_by_resume": summary["skipped_by_resume"],
            "processed_this_run": summary["processed_this_run"],
            **memory.report(),
        }
    with open(os.path.join(finished, "manifest.jsonl"), "rb") as f:
        result["resume_of_finished_run"]["output_manifest_lines"] = sum(1 for _ in f)
    ray.shutdown()
    return result


def all_error_manifest(path: str, rows: int) -> str:
    """`rows` lines that all fail: alternately bad JSON and a missing file that declares 5 s."""
    with open(path, "w") as f:
        for index in range(rows):
            f.write(
                '{"audio_filepath": broken\n'
                if index % 2
                else json.dumps({"audio_filepath": f"missing/{index}.wav", "duration": 5.0}) + "\n"
            )
    return path


def all_error_run(rows: int, output: str) -> dict:
    """`run_corpus` over `rows` lines that all fail (alternately a missing file and bad JSON): wall
    time, and when each block's commit (its recordings part) appeared."""
    import os
    import shutil
    import threading

    import ray

    from pipeline.corpus import run_corpus

    os.makedirs(output, exist_ok=True)
    manifest = all_error_manifest(os.path.join(output, f"errors{rows}.jsonl"), rows)
    run_output = os.path.join(output, "run")
    shutil.rmtree(run_output, ignore_errors=True)
    commits: list[float] = []
    stop = threading.Event()

    def watch() -> None:
        seen: set[str] = set()
        folder = os.path.join(run_output, "recordings")
        while not stop.is_set():
            names = set(os.listdir(folder)) if os.path.isdir(folder) else set()
            commits.extend(time.perf_counter() for _ in names - seen)
            seen |= names
            stop.wait(0.1)

    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    watcher = threading.Thread(target=watch, daemon=True)
    with PeakMemory() as memory:
        began = time.perf_counter()
        watcher.start()
        summary = run_corpus([manifest], run_output)
        ended = time.perf_counter()
        stop.set()
        watcher.join()
    ray.shutdown()
    gaps = [b - a for a, b in zip(commits, commits[1:])]
    return {
        "rows": rows,
        "errors": summary["errors"],
        "wall_seconds": ended - began,
        "rows_per_second": rows / (ended - began),
        "commits": len(commits),
        "first_commit_after_seconds": commits[0] - began if commits else None,
        "longest_gap_between_commits_seconds": max(gaps, default=None),
        "last_commit_to_end_seconds": ended - commits[-1] if commits else None,  # manifest.jsonl + summary.json
        **memory.report(),
    }


def _one_row_manifest(row) -> str:
    import tempfile

    from pipeline.io.manifest import write_manifest

    path = tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False).name
    write_manifest(path, [row])
    return path


def main(argv=None) -> None:
    from pipeline.corpus.options import model_argument

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.benchmark", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=["accuracy", "rtf", "corpus", "manifests", "errors"])
    parser.add_argument("--manifest", help="manifest to measure on (accuracy: or --split)")
    parser.add_argument(
        "--split",
        choices=["dev", "test"],
        help="accuracy: the AMI and simulated corpora of a split (benchmarks.splits)",
    )
    parser.add_argument("--model", default="default", help="accuracy, rtf: registered model name")
    parser.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        type=model_argument,
        help="accuracy (--manifest), rtf: option passed to the model's factory (repeatable)",
    )
    parser.add_argument("--postprocessing-yaml")
    parser.add_argument("--estimate-speakers", action="store_true", help="hide num_speakers from the model")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default="outputs/benchmark", help="corpus: where run_corpus writes")
    parser.add_argument("--compare-in-process", action="store_true", help="corpus: also time a loop of model.diarize()")
    parser.add_argument("--batch-size", type=int, default=4, help="corpus: recordings per model batch")
    parser.add_argument("--actor-threads", type=int, default=None, help="corpus: torch threads per model actor")
    parser.add_argument(
        "--rows",
        type=int,
        help="corpus: run on this many slices of the manifest's files instead; "
        "manifests: rows of the generated manifest",
    )
    parser.add_argument(
        "--error-every", type=int, default=0, help="manifests: every k-th row a missing file, the next bad JSON"
    )
    parser.add_argument("--slice-seconds", type=float, default=5.0, help="corpus: length of each slice with --rows")
    add_data_argument(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.what == "manifests":
        print(json.dumps(manifest_scale(args.rows, args.output, args.error_every), indent=2))
        return
    if args.what == "errors":
        print(json.dumps(all_error_run(args.rows, args.output), indent=2))
        return
    if not args.manifest and not (args.what == "accuracy" and args.split):
        parser.error("--manifest is required (or --split for accuracy)")
    if args.what == "accuracy" and args.split:
        rows = split_accuracy(args.split, args.model, args.postprocessing_yaml, model_kwargs=dict(args.model_arg))
        for row in rows:
            print(json.dumps(row))
        print(split_table(rows))
    elif args.what == "accuracy":
        model = load_model(args.model, device="cpu", **dict(args.model_arg))
        began = time.perf_counter()
        per_recording, overall = diarize_and_score(
            args.manifest, model, postprocessing_yaml=args.postprocessing_yaml, estimate_speakers=args.estimate_speakers
        )
        overall["wall_seconds"] = time.perf_counter() - began  # decode + diarize + scoring
        overall["audio_seconds"] = sum(audio_info(row.audio_filepath).duration for row in read_manifest(args.manifest))
        overall["rtf_including_decode"] = overall["wall_seconds"] / overall["audio_seconds"]
        overall["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        for row in per_recording:
            print(json.dumps(row))
        print(json.dumps(overall, indent=2))
    elif args.what == "rtf":
        model = load_model(args.model, device="cpu", **dict(args.model_arg))
        print(
            json.dumps(
                {**real_time_factor(args.manifest, model, args.batch_size), "model_args": dict(args.model_arg)},
                indent=2,
            )
        )
    else:
        if args.rows:
            import os

            os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
            args.manifest = sliced_manifest(
                args.manifest, args.rows, args.slice_seconds, f"{args.output}.rows{args.rows}.jsonl"
            )
        print(
            json.dumps(
                corpus_throughput(
                    args.manifest,
                    args.output,
                    args.compare_in_process,
                    batch_size=args.batch_size,
                    actor_threads=args.actor_threads,
                ),
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
