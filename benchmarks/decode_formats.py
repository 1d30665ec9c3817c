"""Decoding speed and peak memory by format: libsndfile's (WAV, FLAC) against the containers FFmpeg
decodes through PyAV (M4A/AAC, WebM/Opus), on one long recording built from the AMI excerpts.

    PYTHONPATH=. python benchmarks/decode_formats.py --minutes 60

Each format is decoded whole, and as a 60 s slice from the middle, in a fresh process (its peak RSS
is the decode's alone); the files are written once under `--work`."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

CHILD = """
import json, sys, time
from pipeline.io.audio import decode_audio
path, minutes = sys.argv[1], float(sys.argv[2])
started, cpu = time.perf_counter(), time.process_time()
whole = decode_audio(path)
wall, cpu = time.perf_counter() - started, time.process_time() - cpu
# VmHWM, not ru_maxrss: exec keeps the parent's ru_maxrss, the address space's high-water mark is new
peak = int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024
started = time.perf_counter()
sliced = decode_audio(path, offset=minutes * 30, duration=60.0)
print(json.dumps({"seconds": len(whole) / 16000, "wall": wall, "cpu": cpu, "peak_mib": peak,
                  "slice_seconds": len(sliced) / 16000, "slice_wall": time.perf_counter() - started}))
"""


def write_formats(minutes: float, work: Path) -> dict[str, Path]:
    import numpy as np
    import soundfile as sf

    from benchmarks.data import ami_dir
    from pipeline.io.audio import decode_audio

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from helpers import encode_with_ffmpeg  # the tests' encoder: PyAV, FFmpeg's libraries

    work.mkdir(parents=True, exist_ok=True)
    excerpts = [decode_audio(str(p)) for p in sorted(ami_dir().glob("trn*.wav"))]
    signal = np.concatenate(excerpts * int(np.ceil(minutes * 60 / sum(len(e) / 16000 for e in excerpts))))
    signal = signal[: int(minutes * 60 * 16000)]
    paths = {"wav": work / "long.wav", "flac": work / "long.flac"}
    for path in paths.values():
        if not path.exists():
            sf.write(path, signal, 16000)
    for name, (container, codec, rate) in {"m4a": ("mp4", "aac", 44100), "webm": ("webm", "libopus", 48000)}.items():
        paths[name] = work / f"long.{name}"
        if not paths[name].exists():
            encode_with_ffmpeg(signal, paths[name], container, codec, rate)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--work", type=Path, default=Path("outputs/benchmarks/decode_formats"))
    args = parser.parse_args()
    paths = write_formats(args.minutes, args.work)
    print(f"{'format':<6} {'audio s':>8} {'wall s':>7} {'audio s / CPU s':>15} {'peak MiB':>9} {'60 s slice':>11}")
    for name, path in paths.items():
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(path), str(args.minutes)], capture_output=True, text=True, check=True
        )
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"{name:<6} {r['seconds']:>8.1f} {r['wall']:>7.2f} {r['seconds'] / r['cpu']:>15.0f} "
            f"{r['peak_mib']:>9.0f} {r['slice_wall']:>9.2f} s"
        )


if __name__ == "__main__":
    main()
