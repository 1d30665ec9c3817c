"""Dev and test splits: the data where choices may be made, and the data where accuracy is reported.

A figure measured on the data that a threshold or parameter was tuned on is a fit, not an accuracy.
So every tuning run reads the `dev` split only, and every accuracy claim names the `test` split:

- AMI excerpts (`../shared/data/ami-excerpts`): dev = `trñ00`, `trn01`-`trn04`; test = `trn05`-`trn09`.
- LibriSpeech speakers (`../shared/data/librispeech-train-clean-100`): sorted by id, alternating,
  so the halves are disjoint and of similar size and mix of readers; dev = even ranks, test = odd.
- Simulated conversations: `SIMULATED_SPLITS[split]`, drawn only from that split's speakers, with
  varied overlap, gains, noise and formats (some 8 kHz, some 44.1 kHz stereo), one seed per split;
  short calls; far-field conversations (reverberation, quiet talkers, babble of the split's other
  speakers, lower SNRs: `simulate.far_field_conditions`); meetings where one or two participants
  only listen and say one short thing (0.3-1.5 s), as in AMI excerpts whose known count includes
  them (`SimulatedSplit.minor_speakers_range`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from benchmarks.data import ami_dir as default_ami_dir
from benchmarks.data import check_split, librispeech_dir, librispeech_speakers
from benchmarks.simulate import SimulationConfig, far_field_conditions, write_corpus

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
    far_field: bool = False  # `simulate.far_field_conditions` instead of `varied_conditions`
    minor_speakers_range: tuple[int, int] | None = None  # speakers with one short turn (`SimulationConfig`)


SIMULATED_SPLITS = {"dev": SimulatedSplit(seed=1001), "test": SimulatedSplit(seed=2002)}
# Short calls (20-45 s, like `make run`'s sample): few embeddings, where a count estimate is hardest.
SHORT_SIMULATED_SPLITS = {
    "dev": SimulatedSplit(speakers_range=(1, 3), duration_range=(20.0, 45.0), seed=1011),
    "test": SimulatedSplit(speakers_range=(1, 3), duration_range=(20.0, 45.0), seed=2022),
}

# What a meeting-room microphone hears, where missed speech is the largest error (issue 28).
FAR_FIELD_SPLITS = {
    "dev": SimulatedSplit(duration_range=(60.0, 120.0), seed=1031, far_field=True),
    "test": SimulatedSplit(duration_range=(60.0, 120.0), seed=2042, far_field=True),
}
# Meetings with listeners: a known count then names speakers who leave almost nothing to embed.
LISTENERS_SPLITS = {
    "dev": SimulatedSplit(speakers_range=(3, 5), duration_range=(30.0, 60.0), seed=1051, minor_speakers_range=(1, 2)),
    "test": SimulatedSplit(speakers_range=(3, 5), duration_range=(30.0, 60.0), seed=2062, minor_speakers_range=(1, 2)),
}
CORPORA = ("ami", "simulated", "short", "far_field", "listeners")


def add_split_arguments(parser) -> None:
    """`--split`, `--corpus`, `--model` and `--dest` of the per-corpus diagnoses (`per_file_der`,
    `missed_by_overlap`)."""
    parser.add_argument("--split", choices=("dev", "test"), default="dev")
    parser.add_argument("--corpus", choices=CORPORA, default="ami")
    parser.add_argument("--model", default="default")
    parser.add_argument("--dest", default="outputs/benchmarks/splits")


# More dev data for the count estimate, whose choices swing on a handful of files in 20: dev only
# (`python -m benchmarks.tuning --more`), with seeds of their own.
MORE_DEV_SPLITS = {
    "simulated_more": SimulatedSplit(num=60, seed=1003),
    "short_more": SimulatedSplit(num=60, speakers_range=(1, 3), duration_range=(20.0, 45.0), seed=1012),
}


def ami_manifest(split: str, dest_dir: str, ami_dir: Path | None = None) -> str:
    """A manifest of the split's AMI excerpts (absolute paths, the rows as published)."""
    ami_dir = ami_dir or default_ami_dir()
    names = AMI_SPLITS[check_split(split)]
    rows = [
        json.loads(line)
        for line in (ami_dir / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
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


def split_manifests(
    split: str, dest_dir: str, more: bool = False, corpora: tuple[str, ...] = CORPORA
) -> dict[str, str]:
    """The corpora of a split by name (`CORPORA`, or those of `corpora`): AMI excerpts, simulated
    conversations, short simulated calls, far-field conversations; with `more` (dev only),
    `MORE_DEV_SPLITS` as well."""
    if more and check_split(split) != "dev":
        raise ValueError("more corpora exist for the dev split only: no choice is made on the test split")
    makers = {
        "ami": lambda: ami_manifest(split, dest_dir),
        "simulated": lambda: simulated_manifest(split, dest_dir),
        "short": lambda: simulated_manifest(split, dest_dir, SHORT_SIMULATED_SPLITS[split]),
        "far_field": lambda: simulated_manifest(split, dest_dir, FAR_FIELD_SPLITS[split]),
        "listeners": lambda: simulated_manifest(split, dest_dir, LISTENERS_SPLITS[split]),
    }
    manifests = {name: makers[name]() for name in corpora}
    if more:
        manifests.update({name: simulated_manifest(split, dest_dir, spec) for name, spec in MORE_DEV_SPLITS.items()})
    return manifests


def simulated_manifest(
    split: str, dest_dir: str, spec: SimulatedSplit | None = None, source_dir: str | None = None
) -> str:
    """The split's simulated corpus under `dest_dir/sim-<split>-<num>` (written once, then reused:
    the corpus is a pure function of the spec)."""
    source_dir = source_dir or librispeech_dir()
    spec = spec or SIMULATED_SPLITS[check_split(split)]
    kind = "far" if spec.far_field else "lis" if spec.minor_speakers_range else "sim"
    folder = os.path.join(dest_dir, f"{kind}-{split}-{spec.num}-seed{spec.seed}")
    manifest = os.path.join(folder, "manifest.jsonl")
    if not os.path.exists(manifest):
        base = SimulationConfig(source_dir=source_dir, speaker_pool=librispeech_speakers(split, source_dir))
        write_corpus(
            folder,
            spec.num,
            base,
            speakers_range=spec.speakers_range,
            duration_range=spec.duration_range,
            seed=spec.seed,
            id_prefix=f"{kind}-{split}",
            vary=True,
            conditions=far_field_conditions if spec.far_field else None,
            minor_speakers_range=spec.minor_speakers_range,
        )
    return manifest


@dataclass(frozen=True)
class RecurringSplit:
    """A corpus where speakers recur across conversations (for corpus-wide speaker linking): `num`
    conversations, each of `speakers_range` speakers drawn from a pool of `pool_size` speakers of the
    split; each conversation its own speaker gains (within ± U(0, `gain_spread_db`) dB) and its
    own file format among `formats` (the decoder brings 8 kHz back to 16 kHz)."""

    num: int = 30
    pool_size: int = 12
    speakers_range: tuple[int, int] = (2, 4)
    duration_range: tuple[float, float] = (60.0, 120.0)
    formats: tuple[str, ...] = ("16k", "8k")
    gain_spread_db: float = 8.0
    overlap_ratio: float = 0.1
    seed: int = 0


RECURRING_SPLITS = {"dev": RecurringSplit(seed=3003), "test": RecurringSplit(seed=4004)}


def recurring_pool(split: str, spec: RecurringSplit, source_dir: str | None = None) -> tuple[str, ...]:
    """The `spec.pool_size` speakers of the split that the corpus draws from (seeded)."""
    source_dir = source_dir or librispeech_dir()
    import numpy as np

    speakers = librispeech_speakers(split, source_dir)
    rng = np.random.default_rng([spec.seed, 7])
    return tuple(sorted(str(s) for s in rng.choice(speakers, min(spec.pool_size, len(speakers)), replace=False)))


def recurring_manifest(
    split: str, dest_dir: str, spec: RecurringSplit | None = None, source_dir: str | None = None
) -> str:
    """The split's recurring-speaker corpus under `dest_dir/recurring-<split>-<num>x<pool>-seed<seed>`
    (written once, then reused); references name the LibriSpeech speaker ids, so they are global."""
    source_dir = source_dir or librispeech_dir()
    import dataclasses

    import numpy as np

    from benchmarks.simulate import simulate_conversation, write_audio
    from pipeline.io.manifest import ManifestRow, write_manifest
    from pipeline.io.rttm import write_rttm

    spec = spec or RECURRING_SPLITS[check_split(split)]
    folder = os.path.join(dest_dir, f"recurring-{split}-{spec.num}x{spec.pool_size}-seed{spec.seed}")
    manifest = os.path.join(folder, "manifest.jsonl")
    if os.path.exists(manifest):
        return manifest
    os.makedirs(folder, exist_ok=True)
    base = SimulationConfig(
        source_dir=source_dir, speaker_pool=recurring_pool(split, spec, source_dir), overlap_ratio=spec.overlap_ratio
    )
    rng = np.random.default_rng(spec.seed)
    rows = []
    for index in range(spec.num):
        spread = float(rng.uniform(0.0, spec.gain_spread_db))
        config = dataclasses.replace(
            base,
            seed=int(rng.integers(2**31)),
            num_speakers=int(rng.integers(spec.speakers_range[0], spec.speakers_range[1] + 1)),
            duration_sec=round(float(rng.uniform(*spec.duration_range)), 2),
            gain_db_range=(-spread, spread),
        )
        audio_format = str(spec.formats[int(rng.integers(len(spec.formats)))])
        uniq_id = f"rec-{split}-{index:04d}"
        conversation = simulate_conversation(config, uniq_id)
        write_audio(os.path.join(folder, f"{uniq_id}.wav"), conversation.audio, audio_format)
        write_rttm(os.path.join(folder, f"{uniq_id}.rttm"), uniq_id, conversation.turns)
        rows.append(
            ManifestRow(
                audio_filepath=f"{uniq_id}.wav",
                uniq_id=uniq_id,
                duration=conversation.duration,
                num_speakers=len(conversation.speaker_gains_db),
                rttm_filepath=f"{uniq_id}.rttm",
            )
        )
    temporary = manifest + ".tmp"
    write_manifest(temporary, rows)
    os.replace(temporary, manifest)
    return manifest
