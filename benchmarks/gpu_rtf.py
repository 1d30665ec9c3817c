"""The `default` model on a GPU: RTF per stage over a sweep of batch sizes and precisions, and
what the GPU's labels are against a CPU float32 run of the same model.

    python benchmarks/gpu_rtf.py --manifest M --out gpu.json
        [--precisions float32,bfloat16,float16] [--batch-sizes 1,4,16] [--unit-batches 32:64,default,2048:4096]
        [--repeat N]

Each point loads the model on CUDA with `precision`, `chunk_batch` and `embedding_batch` (the
segmentation's chunks and CAM++'s sequences per call), warms up on one recording, then times
`benchmarks.benchmark.real_time_factor` (forward with the copy to the GPU, stages synchronised,
CPU post-processing) over the manifest in batches of `batch size` recordings; peak GPU memory is
`torch.cuda.max_memory_allocated`. `--repeat N` times the manifest's rows N times over, so that
each point reads enough audio to time a fast GPU; `default` is the model's own batches on CUDA.
Then `diarize()` runs the manifest on CUDA in each precision,
and its segments go to `--out` beside those of a CPU float32 run, for scoring where
pyannote.metrics is installed (`python benchmarks/gpu_rtf.py --score gpu.json --manifest M`).
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def sweep(
    manifest: str,
    precisions: list[str],
    batch_sizes: list[int],
    unit_batches: list[tuple[int | None, int | None]],
    device: str = "cuda",
) -> list[dict]:
    cuda = device == "cuda"
    from benchmarks.benchmark import real_time_factor
    from pipeline.io.dataset import DiarizationDataset
    from pipeline.io.manifest import read_manifest
    from pipeline.models import load_model
    from pipeline.models.contract import RecordingBatch, move_to_device

    first = RecordingBatch.collate([DiarizationDataset(read_manifest(manifest))[0]])
    points = []
    for precision in precisions:
        for chunk_batch, embedding_batch in unit_batches:
            model = load_model(
                "default", device=device, precision=precision, chunk_batch=chunk_batch, embedding_batch=embedding_batch
            )
            try:
                with torch.inference_mode():
                    model._diarize_forward(move_to_device(first, device))  # kernels chosen, caches filled
            except RuntimeError as error:  # a dtype without kernels here: say so, measure the rest
                points.append({"precision": precision, "chunk_batch": chunk_batch, "error": str(error)[:500]})
                print(json.dumps(points[-1]), flush=True)
                continue
            for batch_size in batch_sizes:
                if cuda:
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                result = real_time_factor(manifest, model, batch_size)
                resolved = model.batch_sizes(torch.device(device))
                point = {
                    "precision": precision,
                    "chunk_batch": resolved[0],
                    "embedding_batch": resolved[1],
                    "batches": "default" if chunk_batch is None else "given",
                    **result,
                    "peak_gpu_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
                }
                points.append(point)
                print(json.dumps(point), flush=True)
            del model
            if cuda:
                torch.cuda.empty_cache()
    return points


def repeated(manifest: str, times: int) -> str:
    """A manifest of `manifest`'s rows `times` times over (absolute audio paths), in the temp folder."""
    import os
    import tempfile
    from dataclasses import replace

    from pipeline.io.manifest import read_manifest, write_manifest

    path = os.path.join(tempfile.gettempdir(), f"gpu_rtf.repeat{times}.jsonl")
    write_manifest(
        path,
        [replace(row, uniq_id=f"{row.uniq_id}-{copy}") for copy in range(times) for row in read_manifest(manifest)],
    )
    return path


def labels(manifest: str, precisions: list[str], device: str = "cuda") -> dict[str, list]:
    """Segments of `diarize()` per file: CPU float32, then CUDA in each precision (manifest counts hidden)."""
    from pipeline.io.manifest import read_manifest
    from pipeline.models import load_model

    paths = [row.audio_filepath for row in read_manifest(manifest)]
    runs = {}
    for name, where, precision in [("cpu float32", "cpu", "float32")] + [
        (f"{device} {p}", device, p) for p in precisions
    ]:
        model = load_model("default", device=where, precision=precision)
        began = time.perf_counter()
        try:
            runs[name] = model.diarize(paths, batch_size=4, num_workers=0, verbose=False)
        except RuntimeError as error:
            print(json.dumps({"run": name, "error": str(error)[:500]}), flush=True)
            continue
        print(json.dumps({"run": name, "seconds": time.perf_counter() - began}), flush=True)
    return runs


def score(path: str, manifest: str) -> None:
    from pipeline.io.manifest import read_manifest
    from pipeline.io.rttm import parse_segment
    from pipeline.scoring.metrics import score_rows

    runs = json.load(open(path, encoding="utf-8"))["labels"]
    rows = read_manifest(manifest)
    for name, segments in runs.items():
        hypotheses = {row.uniq_id: [parse_segment(s) for s in segs] for row, segs in zip(rows, segments)}
        overall = score_rows(rows, hypotheses, collar=0.25)[1]
        print(f"{name}: DER {100 * overall['der']:.1f} %, counts right {overall['speaker_count_accuracy']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--out", help="write the sweep and the labels here (JSON)")
    parser.add_argument(
        "--score", metavar="JSON", help="score the labels of an earlier --out against the manifest's RTTMs"
    )
    parser.add_argument("--device", default="cuda", help="cpu: a smoke test of this script")
    parser.add_argument("--precisions", default="float32,bfloat16,float16")
    parser.add_argument("--batch-sizes", default="1,4,16")
    parser.add_argument(
        "--unit-batches", default="32:64,128:256,default", help="chunk_batch:embedding_batch pairs, or default"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="read the manifest's rows this many times over in the sweep"
    )
    args = parser.parse_args()
    if args.score:
        return score(args.score, args.manifest)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("CUDA is not usable here: this benchmark measures the GPU path (--device cpu for a smoke test)")
    precisions = args.precisions.split(",")
    unit_batches = [
        (None, None) if pair == "default" else tuple(int(n) for n in pair.split(":"))
        for pair in args.unit_batches.split(",")
    ]
    timed = repeated(args.manifest, args.repeat) if args.repeat > 1 else args.manifest
    result = {"gpu": torch.cuda.get_device_name() if args.device == "cuda" else "cpu", "torch": torch.__version__}
    result["sweep"] = sweep(timed, precisions, [int(b) for b in args.batch_sizes.split(",")], unit_batches, args.device)
    result["labels"] = labels(args.manifest, precisions, args.device)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
