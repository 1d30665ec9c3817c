"""The default model's CPU path on ONNX Runtime (`pipeline.models.overlap_aware.onnx_runtime`) against
torch, its reference: the exported graphs give the same logits and embeddings on real audio, the
whole forward pass the same activity and embeddings, and the graph cache survives damage."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import AMI
from helpers import cpu_model

from pipeline.errors import BadParameterError
from pipeline.models.contract import RecordingBatch
from pipeline.models.overlap_aware.campplus import fbank, normalize_features
from pipeline.models.overlap_aware.onnx_runtime import OnnxNetworks, cache_dir

LOGIT_TOLERANCE = 1e-4
MIN_COSINE = 0.9999


@pytest.fixture(scope="module")
def speech() -> torch.Tensor:
    audio, _ = sf.read(AMI / "trn03.wav", dtype="float32")
    return torch.from_numpy(audio)


def torch_and_onnx():
    model = cpu_model()
    return model, OnnxNetworks(model.segmentation, model.embedding, threads=2)


def cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1)


def test_segmentation_logits_match_torch(speech):
    model, onnx = torch_and_onnx()
    chunks = speech[: 3 * 160_000].reshape(3, 160_000)
    with torch.inference_mode():
        reference = model.segmentation(chunks)
    # Log-probabilities down to about -20: within 1e-4 absolute, or relative where they are large.
    torch.testing.assert_close(onnx.segment(chunks), reference, atol=LOGIT_TOLERANCE, rtol=LOGIT_TOLERANCE)
    assert (onnx.segment(chunks).exp() - reference.exp()).abs().max() < LOGIT_TOLERANCE  # the probabilities


@pytest.mark.parametrize("halves", [False, True])
def test_campplus_embeddings_match_torch_at_every_length(speech, halves):
    """Sequences of different lengths padded into one call (the graph's steps and batch are dynamic),
    with and without the split each sequence's two sides are pooled at."""
    model, onnx = torch_and_onnx()
    features, _ = fbank(speech[:160_000][None])
    lengths = torch.tensor([998, 640, 333, 101, 37])
    batch = normalize_features(features.expand(len(lengths), -1, -1).clone(), lengths)
    splits = lengths // 3 if halves else None
    with torch.inference_mode():
        reference = model.embedding.statistics(batch, lengths, splits)
    exported = onnx.statistics(batch, lengths, splits)
    for mine, theirs in zip(exported, reference):
        assert mine.shape == theirs.shape
    if halves:  # each side apart
        reference = type(reference)(*(t.flatten(0, 1) for t in reference))
        exported = type(exported)(*(t.flatten(0, 1) for t in exported))
    with torch.inference_mode():
        assert cosines(model.embedding.from_statistics(exported), model.embedding.from_statistics(reference)).min() >= (
            MIN_COSINE
        )


def test_the_whole_forward_pass_gives_the_same_activity_and_embeddings(speech):
    from pipeline import load_model

    audio = speech[: 20 * 16_000][None]
    batch = RecordingBatch(
        audio=audio,
        audio_lengths=torch.tensor([audio.shape[1]]),
        offsets=torch.zeros(1, dtype=torch.float64),
        num_speakers=torch.zeros(1, dtype=torch.long),
        uniq_ids=["trn03"],
    )
    with torch.inference_mode():
        (on_torch,) = load_model("default", device="cpu", runtime="torch")._diarize_forward(batch)
        (on_onnx,) = load_model("default", device="cpu", runtime="onnx")._diarize_forward(batch)
    assert np.mean(on_torch.segmentation == on_onnx.segmentation) > 0.999
    both = np.isfinite(on_torch.embeddings[..., 0]) & np.isfinite(on_onnx.embeddings[..., 0])
    assert both.sum() >= 0.99 * np.isfinite(on_torch.embeddings[..., 0]).sum() > 0
    assert cosines(torch.from_numpy(on_torch.embeddings[both]), torch.from_numpy(on_onnx.embeddings[both])).min() >= (
        MIN_COSINE
    )


def test_a_damaged_cached_graph_is_exported_again(speech, tmp_path, monkeypatch):
    model, onnx = torch_and_onnx()
    chunks = speech[:160_000][None]
    first = onnx.segment(chunks)
    (cached,) = cache_dir().glob(f"segmentation-{onnx.digest('segmentation')}.onnx")
    monkeypatch.setenv("CORPUS_DIARIZATION_CACHE", str(tmp_path))
    damaged = cache_dir() / cached.name
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(cached.read_bytes()[:1000])  # truncated, as by a full disk

    again = OnnxNetworks(model.segmentation, model.embedding, threads=2).segment(chunks)
    torch.testing.assert_close(again, first, atol=LOGIT_TOLERANCE, rtol=LOGIT_TOLERANCE)
    assert damaged.stat().st_size == cached.stat().st_size  # written again, whole


def test_onnx_runtime_needs_float32_networks():
    from pipeline import load_model

    model = load_model("default", device="cpu", runtime="onnx", precision="bfloat16")
    with pytest.raises(BadParameterError, match="runtime='onnx' runs float32 networks"):
        model.onnx_networks(torch.device("cpu"))
