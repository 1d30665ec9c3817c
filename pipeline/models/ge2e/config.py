"""Options of the light `ge2e` model, each with the values it may take, and their check: torch- and
scikit-learn-free, so that the corpus preflight tells a bad `--model-arg` before either loads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.models.options import configured, option


@dataclass
class ClusteringConfig:
    max_num_speakers: int = option(8, low=1, integer=True)
    max_rp_threshold: float = option(0.25, low=0.0, high=1.0)  # largest pruning value tried, as a fraction of N
    sparse_search_volume: int = option(30, low=1, integer=True)  # how many pruning values are tried (NeMo's default)
    # The count most pruning values give (NeMo's maj_vote_spk_count, off there), not the best-scoring
    # value's: that one is often a fragmented graph's, and moved with a 10 ms delay of the input (1 -> 6
    # speakers). Lower estimated-count DER on every dev corpus (docs/journal/2026-12-08-*.md).
    majority_vote_count: bool = option(True, choices=(False, True))
    min_windows_for_estimate: int = option(4, low=1, integer=True)
    min_windows_for_spectral: int = option(
        120, low=0, integer=True
    )  # with a known count, fewer windows are clustered by AHC
    max_direct_windows: int = option(
        3000, low=2, integer=True
    )  # above this, long-form clustering (bounded memory and time)
    max_search_windows: int = option(600, low=2, integer=True)  # the pruning search runs on at most this many windows
    long_form_chunk: int = option(1000, low=2, integer=True)  # windows per chunk in long-form clustering
    centroids_per_chunk: int = option(
        32, low=1, integer=True
    )  # (64 over-split a 1 h meeting: 6 speakers for 4; 32 found 4)
    seed: int = option(0, low=0, integer=True)


@dataclass
class GE2EConfig:
    hop_vad_frames: int = option(
        12, low=1, integer=True
    )  # window hop: 0.384 s (short recordings need enough windows to cluster)
    speech_threshold: float = option(
        0.2, low=0.0, high=1.0
    )  # a frame counts as speech when selecting windows (low: far-field audio)
    min_window_speech: float = option(
        0.3, low=0.0, high=1.0
    )  # fraction of a window that must be speech for it to be embedded
    overlap_sharpness: float = option(1.0, low=0.0)  # exponent on a speaker's share of a frame; large = no overlap
    encoder_chunk: int = option(512, low=1, integer=True)  # windows per encoder call
    embedding_chunk_seconds: float = option(300.0, low=1.0)  # audio whose mel features are held at once
    clustering: ClusteringConfig = option(default_factory=ClusteringConfig, nested=True)


def check_options(config: GE2EConfig | None = None, **options: Any) -> GE2EConfig:
    """The config with `options` applied and checked, no weights loaded."""
    return configured(config or GE2EConfig(), **options)
