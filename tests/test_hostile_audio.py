"""Odd and broken audio: each gives a correct result or a clear error, never a hang or a crash."""

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio
from helpers import AMI, cpu_model

from pipeline.io.audio import AudioDecodeError, audio_info, decode_audio
from pipeline.io.rttm import parse_segment

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def speech():
    return decode_audio(str(AMI / "trn03.wav"))


@pytest.fixture(scope="module")
def reference_speech_seconds(speech):
    (segments,) = cpu_model().diarize([speech], num_workers=0)
    return sum(parse_segment(s).duration for s in segments)


def diarized_speech_seconds(path):
    (segments,) = cpu_model().diarize(str(path), num_workers=0)
    return sum(parse_segment(s).duration for s in segments)


def resampled(samples, rate):
    return torchaudio.functional.resample(torch.from_numpy(samples), 16_000, rate).numpy()


@pytest.mark.parametrize(
    "name,rate,channels,subtype,transform",
    [
        ("pcm_u8", 16_000, 1, "PCM_U8", None),
        ("float32", 16_000, 1, "FLOAT", None),
        ("96khz", 96_000, 1, "PCM_24", None),
        ("six_channels", 16_000, 6, "PCM_16", None),
        ("dc_offset", 16_000, 1, "FLOAT", lambda x: x + 0.3),
        ("clipped", 16_000, 1, "PCM_16", lambda x: np.clip(x * 40, -1, 1)),
    ],
)
def test_odd_formats_give_about_the_same_speech(
    tmp_path, speech, reference_speech_seconds, name, rate, channels, subtype, transform
):
    samples = transform(speech) if transform else speech
    samples = resampled(samples, rate) if rate != 16_000 else samples
    path = tmp_path / f"{name}.wav"
    sf.write(path, np.stack([samples] * channels, axis=1).astype(np.float32), rate, subtype=subtype)
    assert diarized_speech_seconds(path) == pytest.approx(reference_speech_seconds, rel=0.2)


def test_nan_and_inf_samples_are_zeroed_not_propagated(tmp_path, speech, reference_speech_seconds):
    samples = speech.copy()
    samples[1000:1100] = np.nan
    samples[5000:5010] = np.inf
    path = tmp_path / "nan.wav"
    sf.write(path, samples, 16_000, subtype="FLOAT")
    decoded = decode_audio(str(path))
    assert np.isfinite(decoded).all()
    assert diarized_speech_seconds(path) == pytest.approx(reference_speech_seconds, rel=0.2)


def test_header_claiming_more_data_than_the_file_holds_decodes_what_is_there(tmp_path, speech):
    path = tmp_path / "truncated.wav"
    sf.write(path, speech, 16_000, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the header still claims the full length
    decoded = decode_audio(str(path))
    assert 0 < len(decoded) <= len(speech) // 2 + 16


def test_text_named_mp3_is_a_clear_error(tmp_path):
    path = tmp_path / "not_audio.mp3"
    path.write_text("this is a transcript, not an MP3\n" * 50)
    with pytest.raises(AudioDecodeError, match="not_audio.mp3"):
        decode_audio(str(path))


def test_zero_byte_file_is_a_clear_error(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioDecodeError, match="empty"):
        decode_audio(str(path))


def test_offset_past_the_end_is_a_clear_error():
    with pytest.raises(AudioDecodeError, match="past the end"):
        decode_audio(str(AMI / "trn03.wav"), offset=100.0)


def test_slice_reads_only_the_asked_frames(speech):
    sliced = decode_audio(str(AMI / "trn03.wav"), offset=10.0, duration=2.5)
    assert len(sliced) == 40_000
    np.testing.assert_allclose(sliced, speech[160_000:200_000], atol=1e-6)


def test_long_silence_gives_no_segments(tmp_path):
    path = tmp_path / "silence.flac"
    sf.write(path, np.zeros(10 * 60 * 16_000, dtype=np.float32), 16_000)  # 10 minutes (10 h in docs/RESULTS.md)
    assert audio_info(str(path)).duration == pytest.approx(600)
    assert cpu_model().diarize(str(path), num_workers=0) == [[]]


@pytest.mark.parametrize("rate, channels", [(16000, 1), (44100, 2), (8000, 1)])
def test_block_decoding_equals_decoding_the_whole_file(tmp_path, monkeypatch, rate, channels):
    """Files are decoded and resampled a block at a time into one buffer (bounded memory for
    10-hour files); block edges must not show: the result equals a whole-signal resample."""
    import soundfile as sf

    from pipeline.io import audio

    samples = (np.random.default_rng(rate).standard_normal((rate * 5 + 77, channels)) * 0.1).astype(np.float32)
    path = tmp_path / "x.wav"
    sf.write(path, samples, rate, subtype="FLOAT")
    whole = audio.to_mono_16k(samples, rate)
    monkeypatch.setattr(audio, "DECODE_BLOCK_SECONDS", 0.37)
    blocked = audio.decode_audio(str(path))
    assert len(blocked) == len(whole)
    np.testing.assert_allclose(blocked, whole, atol=1e-6)
    sliced = audio.decode_audio(str(path), offset=1.25, duration=2.0)
    start = int(round(1.25 * rate))
    np.testing.assert_allclose(
        sliced, audio.to_mono_16k(samples[start : start + 2 * rate], rate)[: len(sliced)], atol=2e-3
    )
    assert len(sliced) == 32000
