"""Dev and test splits: the data where choices may be made, and the data where accuracy is reported.

A figure measured on the data that a threshold or parameter was tuned on is a fit, not an accuracy.
So every tuning run reads the `dev` split only, and every accuracy claim names the `test` split:

- AMI excerpts (`../shared/data/ami-excerpts`): dev = `trñ00`, `trn01`-`trn04`; test = `trn05`-`trn09`.
- LibriSpeech speakers (`../shared/data/librispeech-train-clean-100`): sorted by id, alternating,
  so the halves are disjoint and of similar size and mix of readers; dev = even ranks, test = odd.
- Simulated conversations: `SIMULATED_SPLITS[split]`, drawn only from that split's speakers, with
  varied overlap, gains, noise and formats (some 8 kHz, some 44.1 kHz stereo), one seed per split.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .simulate import DEFAULT_SOURCE_DIR, SimulationConfig, speaker_files, write_corpus

SPLITS = ("dev", "test")
AMI_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "ami-excerpts"
AMI_SPLITS = {
    "dev": ("trñ00", "trn01", "trn02", "trn03", "trn04"),
    "test": ("trn05", "trn06", "trn07", "trn08", "trn09"),
}


@dataclass(frozen=True)
class SimulatedSplit:
    num: int = 20
    speakers_range: tuple[int, int] = (2, 5)
    duration_range: tuple[float, float] = (60.0, 180.0)
    seed: int = 0


SIMULATED_SPLITS = {"dev": SimulatedSplit(seed=1001), "test": SimulatedSplit(seed=2002)}


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return split


def librispeech_speakers(split: str, source_dir: str = DEFAULT_SOURCE_DIR) -> tuple[str, ...]:
    """The speaker ids of one half of the LibriSpeech speakers (disjoint from the other half)."""
    ranked = sorted(speaker_files(source_dir), key=int)
    return tuple(ranked[SPLITS.index(check_split(split)) :: 2])


def ami_manifest(split: str, dest_dir: str, ami_dir: Path = AMI_DIR) -> str:
    """A manifest of the split's AMI excerpts (absolute paths, the rows as published)."""
    names = AMI_SPLITS[check_split(split)]
    rows = [json.loads(line) for line in (ami_dir / "manifest.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    chosen = []
    for row in rows:
        if Path(row["audio_filepath"]).stem in names:
            chosen.append({k: str(ami_dir / v) if k.endswith("_filepath") and v else v for k, v in row.items()})
    if len(chosen) != len(names):
        raise FileNotFoundError(f"{ami_dir}/manifest.jsonl lacks some of {names}")
    os.makedirs(dest_dir, exist_ok=True)
    path = os.path.join(dest_dir, f"ami-{split}.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in chosen)
    return path


def simulated_manifest(split: str, dest_dir: str, spec: SimulatedSplit | None = None,
                       source_dir: str = DEFAULT_SOURCE_DIR) -> str:
    """The split's simulated corpus under `dest_dir/sim-<split>-<num>` (written once, then reused:
    the corpus is a pure function of the spec)."""
    spec = spec or SIMULATED_SPLITS[check_split(split)]
    folder = os.path.join(dest_dir, f"sim-{split}-{spec.num}-seed{spec.seed}")
    manifest = os.path.join(folder, "manifest.jsonl")
    if not os.path.exists(manifest):
        base = SimulationConfig(source_dir=source_dir, speaker_pool=librispeech_speakers(split, source_dir))
        write_corpus(folder, spec.num, base, speakers_range=spec.speakers_range, duration_range=spec.duration_range,
                     seed=spec.seed, id_prefix=f"sim-{split}", vary=True)
    return manifest
