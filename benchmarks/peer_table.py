"""The peer table: senko's own pipeline beside the project's models, on the same test-split files, one
after the other on this machine, each system in a process of its own (its peak memory is its own):
DER and its parts, speaker counts right (every system estimates the count), real-time factor of
the diarization (decode included, model loading not) and peak RSS.

    python -m benchmarks.peer_table                      # AMI test excerpts + simulated test conversations
    python -m benchmarks.peer_table --systems default,senko --corpora simulated

Systems: `default` (ONNX Runtime on CPU, its default there), `default-torch` (runtime=torch),
`ge2e`, `senko` (senko.Diarizer on CPU, given 16 kHz mono float samples, as its API takes them)."""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SYSTEMS = ("default", "default-torch", "ge2e", "senko")
SCORED = ("der", "missed_speech", "false_alarm", "confusion")


def diarize_all(system: str, manifest: str, threads: int) -> dict:
    """Segments of every row of `manifest` by `system` (estimated counts), with the wall time."""
    import soundfile as sf
    import torch

    from pipeline.io.audio import decode_audio
    from pipeline.io.manifest import read_manifest

    torch.set_num_threads(threads)
    rows = read_manifest(manifest)
    if system == "senko":
        import senko

        diarizer = senko.Diarizer(device="cpu", warmup=True, quiet=True)
        diarizer._set_torch_num_threads(threads)
        diarizer.diarize_samples(decode_audio(rows[0].audio_filepath), 16000)  # a warm-up, as the others get
        began = time.perf_counter()
        hypotheses = {}
        for row in rows:
            samples = decode_audio(row.audio_filepath)  # 16 kHz mono float32, as the project's models read it
            result = diarizer.diarize_samples(samples, 16000) or {"merged_segments": []}
            hypotheses[row.uniq_id] = [(s["start"], s["end"], s["speaker"]) for s in result["merged_segments"]]
    else:
        from dataclasses import replace

        from pipeline import load_model
        from pipeline.io.dataset import DiarizationDataset
        from pipeline.io.rttm import parse_segment
        from pipeline.models.contract import RecordingBatch

        name, options = ("default", {"runtime": "torch"}) if system == "default-torch" else (system, {})
        model = load_model(name, device="cpu", **options)
        rows = [replace(row, num_speakers=None) for row in rows]
        loader = torch.utils.data.DataLoader(DiarizationDataset(rows), batch_size=4, collate_fn=RecordingBatch.collate)
        model.diarize([rows[0].audio_filepath], verbose=False)  # a warm-up: first calls build caches and sessions
        began = time.perf_counter()
        segments = model.diarize(loader, verbose=False)
        hypotheses = {
            row.uniq_id: [(t.start, t.end, t.speaker) for t in map(parse_segment, segs)]
            for row, segs in zip(rows, segments)
        }
    wall = time.perf_counter() - began
    return {
        "system": system,
        "wall_seconds": wall,
        "audio_seconds": sum(sf.info(row.audio_filepath).duration for row in rows),
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "hypotheses": hypotheses,
    }


def measured(system: str, manifest: str, threads: int) -> dict:
    """`diarize_all` in a process of its own, scored here against the manifest's references."""
    from pipeline.io.manifest import read_manifest
    from pipeline.io.rttm import Turn
    from pipeline.scoring.metrics import score_rows

    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.peer_table",
                "--one",
                system,
                "--manifest",
                manifest,
                "--threads",
                str(threads),
                "--json",
                out.name,
            ],
            check=True,
        )
        result = json.loads(Path(out.name).read_text())
    rows = read_manifest(manifest)
    hypotheses = {uid: [Turn(*t) for t in turns] for uid, turns in result.pop("hypotheses").items()}
    _, overall = score_rows(rows, hypotheses, collar=0.25)
    return {
        **{key: overall[key] for key in SCORED},
        "counts_right": f"{round(overall['speaker_count_accuracy'] * len(rows))} / {len(rows)}",
        "rtf": result["wall_seconds"] / result["audio_seconds"],
        **result,
    }


def table(results: list[dict]) -> str:
    lines = [
        "| corpus | system | DER | missed | false alarm | confusion | counts right | RTF | peak RSS |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        parts = " | ".join(f"{100 * r[key]:.1f} %" for key in SCORED)
        lines.append(
            f"| {r['corpus']} | {r['system']} | {parts} | {r['counts_right']} | {r['rtf']:.4f} | "
            f"{r['peak_rss_gib']:.2f} GiB |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--corpora", default="ami,simulated", help="of the test split (benchmarks.splits)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dest", default="outputs/benchmarks/splits")
    parser.add_argument("--one", choices=SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--manifest", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        with open(args.json, "w") as out:
            json.dump(diarize_all(args.one, args.manifest, args.threads), out)
        return

    from benchmarks.splits import split_manifests

    manifests = split_manifests("test", args.dest)
    results = []
    for corpus in args.corpora.split(","):
        for system in args.systems.split(","):
            results.append({"corpus": corpus, **measured(system, manifests[corpus], args.threads)})
            print(json.dumps(results[-1]), flush=True)
    print(table(results))


if __name__ == "__main__":
    main()
