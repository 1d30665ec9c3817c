"""Long recordings take the bounded-memory paths and stay as accurate as short ones. CI uses a
6-minute meeting, long enough for every bounded path to run several times over; the 10 min / 1 h /
3 h / 10 h figures are in docs/RESULTS.md.

- default model: chunks are cut, segmented and embedded `chunk_batch` at a time (never a tensor of
  every chunk: 71 chunks in groups of 16), and above `max_direct` embeddings the clustering's tree
  is built on a sample of them.
- ge2e: mel features a stretch at a time (here 2 minutes instead of 5, so that the meeting takes
  three), long-form clustering over chunk centroids."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from helpers import cpu_model, ge2e_model

from benchmarks.simulate import SimulationConfig, write_corpus
from pipeline.config import DiarizeConfig
from pipeline.io.rttm import parse_segment
from pipeline.models.ge2e.clustering import ClusteringConfig
from pipeline.scoring.metrics import score_rows

pytestmark = pytest.mark.slow

GE2E_STRETCH_SECONDS = 120.0  # ge2e's `embedding_chunk_seconds` here (300 by default)


@pytest.fixture(scope="module")
def long_meeting(tmp_path_factory):
    folder = tmp_path_factory.mktemp("long")
    return write_corpus(
        str(folder), 1, SimulationConfig(num_speakers=4, duration_sec=360, overlap_ratio=0.1, seed=3), seed=3
    )


@pytest.fixture(scope="module")
def long_meeting_forward(long_meeting):
    """The default model's forward item for the meeting, and how many chunks the largest group held."""
    from pipeline.io.dataset import DiarizationDataset
    from pipeline.io.manifest import read_manifest
    from pipeline.models.contract import RecordingBatch

    model = cpu_model()
    (row,) = read_manifest(long_meeting)
    groups = []
    cut = model._cut_chunks

    def recording_cut(*args):
        chunks = cut(*args)
        groups.append(len(chunks))
        return chunks

    model._cut_chunks = recording_cut
    try:
        output = model._diarize_forward(RecordingBatch.collate([DiarizationDataset([row])[0]]))[0]
    finally:
        del model._cut_chunks
    return row, output, groups


def test_default_model_forwards_a_long_meeting_a_chunk_group_at_a_time(long_meeting_forward):
    _, output, groups = long_meeting_forward
    chunk_batch, _ = cpu_model().batch_sizes(torch.device("cpu"))
    assert len(output.chunk_starts) == len(output.segmentation) == len(output.embeddings) > 2 * chunk_batch
    assert max(groups) <= chunk_batch and len(groups) > 2


def score_forward(model, row, item) -> tuple[list[dict], dict]:
    """Output processing of one forward item with the count hidden, scored as `diarize_and_score`
    scores it: each clustering setting is tried on one forward pass."""
    (result,) = model._diarize_results([replace(item, num_speakers=0)], [row.uniq_id], DiarizeConfig())
    hypothesis = {row.uniq_id: [parse_segment(segment) for segment in result.segments]}
    return score_rows([replace(row, num_speakers=None)], hypothesis, collar=0.25)


@pytest.mark.parametrize("max_direct", [None, 150])
def test_default_model_on_a_long_meeting_is_as_accurate_as_on_short_ones(long_meeting_forward, max_direct):
    """Direct clustering and the sampled path (forced) both find every speaker."""
    row, item, _ = long_meeting_forward
    model = cpu_model()
    default = model.config.clustering
    if max_direct:
        model.config.clustering = replace(default, max_direct=max_direct)
    try:
        per_recording, overall = score_forward(model, row, item)
    finally:
        model.config.clustering = default
    assert per_recording[0]["hypothesis_speakers"] == 4
    assert overall["der"] < 0.08


@pytest.fixture(scope="module")
def ge2e_long_meeting_forward(long_meeting):
    from pipeline.io.dataset import DiarizationDataset
    from pipeline.io.manifest import read_manifest
    from pipeline.models.contract import RecordingBatch

    (row,) = read_manifest(long_meeting)
    model = ge2e_model()
    default = model.config
    model.config = replace(default, embedding_chunk_seconds=GE2E_STRETCH_SECONDS)
    try:
        return row, model._diarize_forward(RecordingBatch.collate([DiarizationDataset([row])[0]]))[0]
    finally:
        model.config = default


def test_ge2e_long_meeting_uses_the_bounded_feature_path(ge2e_long_meeting_forward):
    _, output = ge2e_long_meeting_forward
    model = ge2e_model()
    assert len(output.speech_probs) * model.frame_seconds > 2 * GE2E_STRETCH_SECONDS  # chunked mel
    assert len(output.embeddings) > ClusteringConfig().max_search_windows  # subsampled pruning search


@pytest.mark.parametrize("forced", [{}, {"max_direct_windows": 500, "long_form_chunk": 400}])
def test_ge2e_long_meeting_is_as_accurate_as_short_ones(ge2e_long_meeting_forward, forced):
    """With the default settings (pruning searched on a subset) and with long-form clustering
    forced (the meeting's 909 windows summarised in three chunks' centroids), every speaker is found
    and DER stays near the short conversations'."""
    row, item = ge2e_long_meeting_forward
    model = ge2e_model()
    default = model.config.clustering
    assert not forced or len(item.embeddings) > 2 * forced["long_form_chunk"]
    model.config.clustering = replace(default, **forced)
    try:
        per_recording, overall = score_forward(model, row, item)
    finally:
        model.config.clustering = default
    assert per_recording[0]["hypothesis_speakers"] == 4
    assert overall["der"] < 0.10
