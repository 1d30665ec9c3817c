"""Where the lab's data is: `../shared/data` beside the checkout, or the folder given with `--data`
(or `CORPUS_DIARIZATION_DATA`). The installed package never reads it."""

from __future__ import annotations

import argparse
import os
from collections import defaultdict
from functools import lru_cache
from pathlib import Path

SPLITS = ("dev", "test")
ENVIRONMENT = "CORPUS_DIARIZATION_DATA"
CHECKOUT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def data_dir() -> Path:
    return Path(os.environ.get(ENVIRONMENT) or CHECKOUT_DATA)


def ami_dir() -> Path:
    return data_dir() / "ami-excerpts"


def librispeech_dir() -> str:
    return str(data_dir() / "librispeech-train-clean-100")


def add_data_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        action=_UseData,
        help=f"the data folder (default: ${ENVIRONMENT}, else {CHECKOUT_DATA})",
    )


TEST_EXCERPTS = ("trn05", "trn06", "trn07", "trn08", "trn09")  # the AMI test split


def adapter_arguments(description: str) -> argparse.Namespace:
    """The checkpoint-adapter benchmarks' options: data folder, batch sizes, device, repeats."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_argument(parser)
    parser.add_argument("--batch-sizes", default="1,5")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=1, help="read the files this many times over")
    return parser.parse_args()


class _UseData(argparse.Action):
    """`--data DIR` applies at once, for every later default in this process and its Ray workers."""

    def __call__(self, parser, namespace, values, option_string=None):
        os.environ[ENVIRONMENT] = str(Path(values).resolve())
        setattr(namespace, self.dest, values)


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return split


@lru_cache(maxsize=16)
def speaker_files(source_dir: str) -> dict[str, tuple[str, ...]]:
    """FLAC files per speaker id (the first `-` field of a LibriSpeech file name), sorted."""
    files: dict[str, list[str]] = defaultdict(list)
    for path in sorted(Path(source_dir).glob("*.flac")):
        files[path.name.split("-")[0]].append(str(path))
    if not files:
        raise FileNotFoundError(f"no .flac files in {source_dir}")
    return {speaker: tuple(paths) for speaker, paths in sorted(files.items())}


def librispeech_speakers(split: str, source_dir: str | None = None) -> tuple[str, ...]:
    """The speaker ids of one half of the LibriSpeech speakers (disjoint from the other half):
    sorted by id, alternating, so the halves are of similar size and mix of readers."""
    ranked = sorted(speaker_files(source_dir or librispeech_dir()), key=int)
    return tuple(ranked[SPLITS.index(check_split(split)) :: 2])
