"""In-process measurements of a model: accuracy (DER on a manifest with references) and real-time
factor split into VAD, embeddings and clustering. The figures in BENCHMARKS.md come from here:

    python -m pipeline.benchmark accuracy --manifest ../shared/data/ami-excerpts/manifest.jsonl \
        --postprocessing-yaml pipeline/conf/far_field.yaml --estimate-speakers
    python -m pipeline.benchmark rtf --manifest SIMULATED/manifest.jsonl
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
            model._diarize_output_processing(outputs, batch["uniq_ids"], config)  # clusters again
            post = time.perf_counter() - began
            timings["vad"] += vad
            timings["embeddings"] += max(forward - vad, 0.0)  # mel features + encoder
            timings["clustering"] += clustering
            timings["segments"] += max(post - clustering, 0.0)
    total = sum(timings.values())
    return {
        "audio_seconds": audio_seconds,
        "wall_seconds": total,
        "rtf": total / audio_seconds,
        "rtf_by_stage": {name: seconds / audio_seconds for name, seconds in timings.items()},
        "threads": torch.get_num_threads(),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.benchmark", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["accuracy", "rtf"])
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--postprocessing-yaml")
    parser.add_argument("--estimate-speakers", action="store_true", help="hide num_speakers from the model")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.what == "accuracy":
        model = load_model("default", device="cpu")
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
    else:
        print(json.dumps(real_time_factor(args.manifest), indent=2))


if __name__ == "__main__":
    main()
