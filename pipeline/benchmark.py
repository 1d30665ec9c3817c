"""In-process measurements of a model: accuracy (DER on a manifest with references) and real-time
factor split into VAD, embeddings and clustering. The figures in BENCHMARKS.md come from here:

    python -m pipeline.benchmark accuracy --split test --model default     # AMI + simulated, known and estimated counts
    python -m pipeline.benchmark accuracy --manifest ../shared/data/ami-excerpts/manifest.jsonl \
        --postprocessing-yaml pipeline/conf/far_field.yaml --estimate-speakers
    python -m pipeline.benchmark rtf --manifest SIMULATED/manifest.jsonl
    python -m pipeline.benchmark corpus --manifest SIMULATED/manifest.jsonl --compare-in-process
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from dataclasses import replace

import torch

from .audio import audio_info
from .config import DiarizeConfig, InternalDiarizeConfig, load_postprocessing_from_yaml
from .dataset import DiarizationDataset, collate_recordings
from .manifest import read_manifest
from .models import load_model
from .rttm import parse_segment
from .scoring import score_rows


def diarize_and_score(manifest: str, model=None, postprocessing_yaml: str | None = None,
                      estimate_speakers: bool = False, collar: float = 0.25, batch_size: int = 4):
    """DER of `model.diarize()` on a manifest whose rows name reference RTTMs. With
    `estimate_speakers` the rows' `num_speakers` are hidden from the model."""
    model = model or load_model("default", device="cpu")
    rows = read_manifest(manifest)
    if estimate_speakers:
        rows = [replace(row, num_speakers=None) for row in rows]
    loader = torch.utils.data.DataLoader(DiarizationDataset(rows), batch_size=batch_size, collate_fn=collate_recordings)
    segments = model.diarize(loader, postprocessing_yaml=postprocessing_yaml)
    hypotheses = {row.uniq_id: [parse_segment(s) for s in segs] for row, segs in zip(rows, segments)}
    return score_rows(rows, hypotheses, collar=collar)


SPLIT_COLUMNS = ("der", "missed_speech", "false_alarm", "confusion", "jer")


def split_accuracy(split: str, model_name: str = "default", postprocessing_yaml: str | None = None,
                   dest_dir: str = "outputs/benchmarks/splits") -> list[dict]:
    """One row per (corpus, speaker count) of a split: AMI excerpts and simulated conversations
    (see `pipeline.splits`), with the manifests' counts and with counts estimated by the model."""
    from .splits import ami_manifest, simulated_manifest

    model = load_model(model_name, device="cpu")
    manifests = {"ami": ami_manifest(split, dest_dir), "simulated": simulated_manifest(split, dest_dir)}
    rows = []
    for corpus, manifest in manifests.items():
        for estimate in (False, True):
            began = time.perf_counter()
            _, overall = diarize_and_score(manifest, model, postprocessing_yaml, estimate_speakers=estimate)
            rows.append({"split": split, "corpus": corpus, "model": model_name, "count": "estimated" if estimate else "known",
                         **overall, "wall_seconds": time.perf_counter() - began})
    return rows


def split_table(rows: list[dict]) -> str:
    """Markdown rows for BENCHMARKS.md."""
    lines = ["| split | corpus | model | count | DER | missed | false alarm | confusion | JER | count right |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        figures = " | ".join(f"{100 * row[name]:.1f} %" for name in SPLIT_COLUMNS)
        right = round(row["speaker_count_accuracy"] * row["recordings"])
        lines.append(f"| {row['split']} | {row['corpus']} | {row['model']} | {row['count']} | {figures} | {right} / {row['recordings']} |")
    return "\n".join(lines)


def real_time_factor(manifest: str, model=None, batch_size: int = 4) -> dict:
    """Wall time / audio time of the default model (weights loaded, audio decoded beforehand),
    split into its stages."""
    from .models.clustering import spectral_cluster

    model = model or load_model("default", device="cpu")
    rows = read_manifest(manifest)
    dataset = DiarizationDataset(rows)
    items = [dataset[i] for i in range(len(dataset))]
    audio_seconds = sum(len(item["audio"]) for item in items) / 16_000
    config = DiarizeConfig(postprocessing_params=load_postprocessing_from_yaml(None), _internal=InternalDiarizeConfig())
    timings = {"vad": 0.0, "embeddings": 0.0, "clustering": 0.0, "segments": 0.0}
    segments = windows = 0
    with torch.inference_mode():
        for start in range(0, len(items), batch_size):
            batch = collate_recordings(items[start : start + batch_size])
            began = time.perf_counter()
            model.vad(batch["audio"])  # timed alone; the forward pass below runs it again
            vad = time.perf_counter() - began
            began = time.perf_counter()
            outputs = model._diarize_forward(batch)
            forward = time.perf_counter() - began
            began = time.perf_counter()
            for output in outputs:
                spectral_cluster(output["embeddings"], output["num_speakers"] or None, model.config.clustering)
            clustering = time.perf_counter() - began
            began = time.perf_counter()
            segments += sum(map(len, model._diarize_output_processing(outputs, batch["uniq_ids"], config)))  # clusters again
            post = time.perf_counter() - began
            timings["vad"] += vad
            timings["embeddings"] += max(forward - vad, 0.0)  # mel features + encoder
            windows += sum(len(output["embeddings"]) for output in outputs)
            timings["clustering"] += clustering
            timings["segments"] += max(post - clustering, 0.0)
    total = sum(timings.values())
    return {
        "audio_seconds": audio_seconds,
        "wall_seconds": total,
        "rtf": total / audio_seconds,
        "rtf_by_stage": {name: seconds / audio_seconds for name, seconds in timings.items()},
        "threads": torch.get_num_threads(),
        "segments_found": segments,
        "embedding_ms_per_window": 1000 * timings["embeddings"] / max(windows, 1),
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


class PeakMemory:
    """Peak resident memory of this process (the driver) and of Ray's worker processes, sampled
    from a background thread (psutil ships with Ray)."""

    def __init__(self, interval: float = 0.25):
        import threading

        self.interval, self.driver, self.workers = interval, 0, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        import os

        import psutil

        me = psutil.Process(os.getpid())
        while not self._stop.is_set():
            self.driver = max(self.driver, me.memory_info().rss)
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
        return {"driver_peak_gib": self.driver / gib, "worker_peak_gib": {k: v / gib for k, v in sorted(self.workers.items())}}


def corpus_throughput(manifest: str, output: str, compare_in_process: bool, **run_options) -> dict:
    """Audio seconds per wall second of `run_corpus` and, when asked, of a plain in-process loop of
    `model.diarize()` over the same files, in one process on the same cores."""
    import shutil

    from .corpus import run_corpus

    result: dict = {}
    if compare_in_process:
        model = load_model("default", device="cpu")
        rows = read_manifest(manifest)
        began = time.perf_counter()
        for row in rows:
            model.diarize(_one_row_manifest(row), num_workers=0)
        wall = time.perf_counter() - began
        audio = sum(row.duration or audio_info(row.audio_filepath).duration for row in rows)
        result["in_process"] = {"audio_seconds": audio, "wall_seconds": wall, "audio_seconds_per_wall_second": audio / wall}
    shutil.rmtree(output, ignore_errors=True)
    with PeakMemory() as memory:
        summary = run_corpus([manifest], output, **run_options)
    result["ray"] = {
        "rows": summary["input_rows"], "ok": summary["ok"], "errors": summary["errors"],
        "audio_seconds": summary["audio_hours"] * 3600, "wall_seconds": summary["wall_seconds"],
        "audio_seconds_per_wall_second": summary["audio_seconds_per_wall_second"], **memory.report(),
    }
    if compare_in_process:
        result["ray_over_in_process"] = result["ray"]["audio_seconds_per_wall_second"] / result["in_process"]["audio_seconds_per_wall_second"]
    return result


def sliced_manifest(manifest: str, rows: int, slice_seconds: float, path: str) -> str:
    """A manifest of `rows` rows, each a `slice_seconds` slice of the files of `manifest`, cycling
    through files and offsets: a corpus of any row count from a few files (memory benchmarks)."""
    from .manifest import ManifestRow, write_manifest

    sources = [(row.audio_filepath, audio_info(row.audio_filepath).duration) for row in read_manifest(manifest)]
    sliced = []
    for index in range(rows):
        audio, duration = sources[index % len(sources)]
        slots = max(1, int(duration // slice_seconds))
        offset = ((index // len(sources)) % slots) * slice_seconds
        sliced.append(ManifestRow(audio, uniq_id="", offset=offset, duration=slice_seconds).to_json() | {"uniq_id": None})
    write_manifest(path, sliced)
    return path


def _one_row_manifest(row) -> str:
    import tempfile

    from .manifest import write_manifest

    path = tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False).name
    write_manifest(path, [row])
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.benchmark", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["accuracy", "rtf", "corpus"])
    parser.add_argument("--manifest", help="manifest to measure on (accuracy: or --split)")
    parser.add_argument("--split", choices=["dev", "test"], help="accuracy: the AMI and simulated corpora of a split (pipeline.splits)")
    parser.add_argument("--model", default="default", help="accuracy: registered model name")
    parser.add_argument("--postprocessing-yaml")
    parser.add_argument("--estimate-speakers", action="store_true", help="hide num_speakers from the model")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default="outputs/benchmark", help="corpus: where run_corpus writes")
    parser.add_argument("--compare-in-process", action="store_true", help="corpus: also time a loop of model.diarize()")
    parser.add_argument("--batch-size", type=int, default=4, help="corpus: recordings per model batch")
    parser.add_argument("--actor-threads", type=int, default=None, help="corpus: torch threads per model actor")
    parser.add_argument("--rows", type=int, help="corpus: run on this many slices of the manifest's files instead")
    parser.add_argument("--slice-seconds", type=float, default=5.0, help="corpus: length of each slice with --rows")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not args.manifest and not (args.what == "accuracy" and args.split):
        parser.error("--manifest is required (or --split for accuracy)")
    if args.what == "accuracy" and args.split:
        rows = split_accuracy(args.split, args.model, args.postprocessing_yaml)
        for row in rows:
            print(json.dumps(row))
        print(split_table(rows))
    elif args.what == "accuracy":
        model = load_model(args.model, device="cpu")
        began = time.perf_counter()
        per_recording, overall = diarize_and_score(args.manifest, model, postprocessing_yaml=args.postprocessing_yaml,
                                                   estimate_speakers=args.estimate_speakers)
        overall["wall_seconds"] = time.perf_counter() - began  # decode + diarize + scoring
        overall["audio_seconds"] = sum(audio_info(row.audio_filepath).duration for row in read_manifest(args.manifest))
        overall["rtf_including_decode"] = overall["wall_seconds"] / overall["audio_seconds"]
        overall["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        for row in per_recording:
            print(json.dumps(row))
        print(json.dumps(overall, indent=2))
    elif args.what == "rtf":
        print(json.dumps(real_time_factor(args.manifest), indent=2))
    else:
        if args.rows:
            import os

            os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
            args.manifest = sliced_manifest(args.manifest, args.rows, args.slice_seconds, f"{args.output}.rows{args.rows}.jsonl")
        print(json.dumps(corpus_throughput(args.manifest, args.output, args.compare_in_process, batch_size=args.batch_size,
                                          actor_threads=args.actor_threads), indent=2))


if __name__ == "__main__":
    main()
