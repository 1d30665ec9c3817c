"""Audio libsndfile does not read decoded through FFmpeg's libraries (PyAV): containers it does not
know (M4A/AAC, WebM/Opus) and codecs inside formats it knows (G.722 and G.726 telephony WAVs, ALAC in
CAF). The same 16 kHz mono signal, slices that line up with the whole file, durations for dry runs,
on local disks and S3, and the errors of the libsndfile path."""

from __future__ import annotations

import re

import numpy as np
import pytest
import soundfile as sf
from helpers import AMI, cpu_model, encode_with_ffmpeg

from pipeline.io.audio import AudioDecodeError, audio_info, decode_audio
from pipeline.io.rttm import parse_segment

CONTAINERS = {  # name: (container, codec, rate, channels, what libsndfile says)
    "m4a": ("mp4", "aac", 44_100, 2, "Format not recognised."),
    "webm": ("webm", "libopus", 48_000, 1, "Format not recognised."),
    "g722.wav": ("wav", "g722", 16_000, 1, "Error in WAV/W64/RF64 file. Malformed 'fmt ' chunk."),
}


@pytest.fixture(scope="module")
def speech():
    return decode_audio(str(AMI / "trn03.wav"))


@pytest.fixture(scope="module", params=sorted(CONTAINERS))
def encoded(request, speech, tmp_path_factory):
    container, codec, rate, channels, _ = CONTAINERS[request.param]
    path = tmp_path_factory.mktemp("containers") / f"trn03.{request.param}"
    return encode_with_ffmpeg(speech, path, container, codec, rate, channels), channels


def libsndfile_words(path) -> str:
    return CONTAINERS[path.name.split(".", 1)[1]][-1]


def lag_samples(a: np.ndarray, b: np.ndarray, most: int = 1_000) -> int:
    """The shift of `b` against `a` (in samples) at which they agree best."""
    n = min(len(a), len(b)) - 2 * most
    return max(range(-most, most + 1), key=lambda k: float(np.dot(a[most : most + n], b[most + k : most + k + n])))


def test_libsndfile_does_not_read_them(encoded):
    path, _ = encoded
    with pytest.raises(sf.LibsndfileError) as refused:
        sf.info(str(path))
    assert refused.value.error_string == libsndfile_words(path)


@pytest.mark.parametrize("container, codec, rate", [("wav", "g726", 8_000), ("caf", "alac", 16_000)])
def test_other_codecs_libsndfile_does_not_read_decode_through_ffmpeg(speech, tmp_path, container, codec, rate):
    path = encode_with_ffmpeg(speech, tmp_path / f"trn03.{container}", container, codec, rate)
    with pytest.raises(sf.LibsndfileError):
        sf.info(str(path))
    decoded = decode_audio(str(path))
    assert lag_samples(speech, decoded) == 0 and np.corrcoef(speech, decoded[: len(speech)])[0, 1] > 0.99


def test_a_container_decodes_to_the_signal_it_was_encoded_from(encoded, speech):
    path, channels = encoded
    decoded = decode_audio(str(path))
    assert decoded.dtype == np.float32 and decoded.ndim == 1
    assert len(decoded) == pytest.approx(len(speech), abs=0.05 * 16_000)  # AAC's priming: 1,024 frames at most
    shift = lag_samples(speech, decoded)
    aligned = decoded[shift : shift + len(speech) - 1_000] if shift >= 0 else decoded[: len(speech) + shift - 1_000]
    original = speech[: len(aligned)] if shift >= 0 else speech[-shift : -shift + len(aligned)]
    assert abs(shift) <= 400 and np.corrcoef(original, aligned)[0, 1] > 0.99
    # the channels' mean, as every other format (the stereo file's right channel is silent)
    assert np.sqrt(np.mean(aligned**2)) == pytest.approx(np.sqrt(np.mean(original**2)) / channels, rel=0.05)


@pytest.mark.parametrize("offset", [0.5, 10.0, 21.3])
def test_a_slice_is_the_whole_decode_s_samples_there(encoded, offset):
    path, _ = encoded
    whole = decode_audio(str(path))
    sliced = decode_audio(str(path), offset=offset, duration=5.0)
    there = whole[int(offset * 16_000) :][: len(sliced)]
    assert len(sliced) == 80_000
    assert lag_samples(there, sliced, 400) == 0 and np.corrcoef(there, sliced)[0, 1] > 0.99


def test_the_duration_is_read_from_the_container_and_an_offset_past_it_is_an_error(encoded):
    path, _ = encoded
    assert audio_info(str(path)).duration == pytest.approx(30.0, abs=0.05)
    with pytest.raises(AudioDecodeError, match="past the end"):
        decode_audio(str(path), offset=100.0)


def test_a_container_is_diarized_like_the_wav_it_came_from(encoded):
    path, _ = encoded
    # The default model: ge2e's estimated count moves with a delay of the input (trn03: one speaker,
    # six once 10 ms of silence lead it, as G.722's 22-sample codec delay does).
    (from_wav,) = cpu_model().diarize(str(AMI / "trn03.wav"), num_workers=0)
    (from_container,) = cpu_model().diarize(str(path), num_workers=0)
    speakers = {parse_segment(s).speaker for s in from_container}
    assert speakers == {parse_segment(s).speaker for s in from_wav}
    seconds = sum(parse_segment(s).duration for s in from_container)
    assert seconds == pytest.approx(sum(parse_segment(s).duration for s in from_wav), rel=0.1)


def test_a_damaged_container_keeps_what_decodes_or_is_an_error_naming_both_decoders(encoded, tmp_path):
    path, _ = encoded
    data = path.read_bytes()
    cut = tmp_path / f"cut{path.suffix}"
    cut.write_bytes(data[:200])  # a header and nothing of the stream (a WAV's header is whole: 9 ms follow it)
    if path.suffix == ".wav":
        assert len(decode_audio(str(cut))) < 0.1 * 16_000
    else:
        with pytest.raises(
            AudioDecodeError, match=rf"cannot decode {cut}: {re.escape(libsndfile_words(path))} \(FFmpeg: "
        ):
            decode_audio(str(cut))
    half = tmp_path / f"half{path.suffix}"
    half.write_bytes(data[: len(data) // 2])
    if path.suffix in (".webm", ".wav"):  # a stream: what arrived decodes, as a truncated WAV's samples do
        assert 10 * 16_000 < len(decode_audio(str(half))) < 20 * 16_000
    else:  # MP4 keeps its index (the moov box) at the end: without it nothing can be found
        with pytest.raises(AudioDecodeError, match=r"\(FFmpeg: "):
            decode_audio(str(half))


def test_a_container_on_s3_decodes_through_range_reads(s3_endpoint, encoded):
    import s3fs

    path, _ = encoded
    options = {"client_kwargs": {"endpoint_url": s3_endpoint}}
    fs = s3fs.S3FileSystem(**options)
    if not fs.exists("containers"):
        fs.mkdir("containers")
    fs.put_file(str(path), f"containers/{path.name}")
    uri = f"s3://containers/{path.name}"
    np.testing.assert_array_equal(decode_audio(uri, storage_options=options), decode_audio(str(path)))
    assert audio_info(uri, storage_options=options).duration == pytest.approx(30.0, abs=0.05)
