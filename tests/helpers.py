"""Paths and shared, cached objects for tests (real data from ../shared/data, real weights)."""

from functools import lru_cache
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
AMI = DATA / "ami-excerpts"
LIBRISPEECH = DATA / "librispeech-train-clean-100"
FAR_FIELD_YAML = REPO / "pipeline" / "conf" / "far_field.yaml"


@lru_cache(maxsize=1)
def cpu_model():
    """The default (overlap-aware) model on CPU."""
    from pipeline import load_model

    torch.set_num_threads(2)
    return load_model("default", device="cpu")


@lru_cache(maxsize=1)
def ge2e_model():
    """The light GE2E model (Silero VAD + GE2E + NME-SC) on CPU."""
    from pipeline import load_model

    torch.set_num_threads(2)
    return load_model("ge2e", device="cpu")
