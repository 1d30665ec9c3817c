"""Audio in: the one decoder of the project (API, Ray decode stage and tests all use it).

Any path or URI fsspec can open (or raw bytes), any format libsndfile reads (WAV, FLAC, OGG, MP3),
any sample rate and channel count, in; 16 kHz mono float32 out. Only the `offset`/`duration` slice
is read: soundfile seeks, and on object storage fsspec turns that into range requests. Containers
libsndfile does not recognise (M4A/AAC, MP4, WebM/Opus, WMA, AMR...) are decoded by FFmpeg's
libraries through PyAV, frame by frame into the same 16 kHz mono buffer.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import fsspec
import numpy as np
import soundfile as sf
import torch
import torchaudio

SAMPLE_RATE = 16_000


class AudioDecodeError(ValueError):
    """The file exists but is not usable audio; the message says why and names the file."""


@dataclass
class AudioInfo:
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def _open(source: str | bytes, storage_options: dict | None):
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(source)
    if "://" not in source or source.startswith("file://"):
        return fsspec.open(source, "rb").open()
    return fsspec.open(source, "rb", **(storage_options or {})).open()


def _name(source: str | bytes) -> str:
    return "<bytes>" if isinstance(source, (bytes, bytearray, memoryview)) else source


def _missing(name: str, error: FileNotFoundError) -> OSError:
    """`audio file not found`; but fsspec's HTTP filesystem says FileNotFoundError for a server that
    refused the connection or answered 403 or 503 too (the cause tells): that is a ConnectionError
    naming it, which a later `--retry-errors` may get past."""
    cause = error.__cause__
    if name.startswith(("http://", "https://")) and cause is not None and getattr(cause, "status", None) != 404:
        return ConnectionError(f"cannot read {name}: {str(cause).splitlines()[0]}")
    return FileNotFoundError(f"audio file not found: {name}")


def _reason(error: Exception) -> str:
    """libsndfile's own words (`Format not recognised.`), without the file object's repr that
    `str(LibsndfileError)` puts before them."""
    return getattr(error, "error_string", None) or str(error)


# libsndfile's SF_ERR_UNRECOGNISED_FORMAT: not a file it reads, as against one it reads that is damaged
UNRECOGNISED_FORMAT = 1


def _unrecognised(error: Exception) -> bool:
    return getattr(error, "code", None) == UNRECOGNISED_FORMAT


def audio_info(source: str | bytes, storage_options: dict | None = None) -> AudioInfo:
    with _open(source, storage_options) as f:
        try:
            info = sf.info(f)
        except (sf.LibsndfileError, RuntimeError) as error:
            found = _container_info(f) if _unrecognised(error) else "not tried"
            if isinstance(found, str):
                raise AudioDecodeError(f"cannot decode {_name(source)}: {_reason(error)}{_also(found)}") from None
            return found
    return AudioInfo(info.samplerate, info.channels, info.frames)


# Files are decoded a block at a time into one preallocated 16 kHz buffer, so a 10-hour file costs its
# decoded signal once (0.23 GB per hour) plus one block, never the file at its own rate and channels.
DECODE_BLOCK_SECONDS = 60.0
# Resampled blocks carry this much input on each side so that the windowed-sinc filter sees the
# same neighbours as a whole-signal resample (torchaudio's kernel spans 6 zero crossings, < 1 ms).
RESAMPLE_CONTEXT_SECONDS = 0.05


def to_mono(samples: np.ndarray) -> np.ndarray:
    """(frames, channels) -> (frames,) float32 by mean downmix; non-finite samples (NaN/Inf in float
    files) become 0."""
    mono = samples.mean(axis=1, dtype=np.float32) if samples.ndim == 2 else samples.astype(np.float32, copy=False)
    return np.nan_to_num(mono, copy=False, nan=0.0, posinf=0.0, neginf=0.0)


def to_mono_16k(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """(frames, channels) at any rate to (frames,) float32 at 16 kHz: mean downmix, then torchaudio's
    band-limited resampler. Non-finite samples (NaN/Inf in float files) become 0."""
    mono = to_mono(samples)
    if sample_rate != SAMPLE_RATE and mono.size:
        mono = torchaudio.functional.resample(torch.from_numpy(mono), sample_rate, SAMPLE_RATE).numpy()
    return np.ascontiguousarray(mono, dtype=np.float32)


def resampled_length(frames: int, sample_rate: int) -> int:
    """Samples torchaudio's resampler returns for `frames` input frames."""
    return int(math.ceil(SAMPLE_RATE * frames / sample_rate)) if frames else 0


def read_resampled(audio: sf.SoundFile, frames: int) -> np.ndarray:
    """`frames` frames from the current position of `audio` (to its end when -1), as 16 kHz mono
    float32, decoded and resampled a block at a time into one buffer. Block edges fall on whole
    resampling periods and carry filter context, so the result equals a whole-signal resample."""
    rate = audio.samplerate
    start = audio.tell()
    if frames < 0 and not audio.seekable():  # length unknown until read: no preallocation
        return to_mono_16k(audio.read(-1, dtype="float32", always_2d=True), rate)
    frames = audio.frames - start if frames < 0 else min(frames, audio.frames - start)
    out = np.empty(resampled_length(frames, rate), dtype=np.float32)
    if rate == SAMPLE_RATE:
        block = int(DECODE_BLOCK_SECONDS * rate)
        for first in range(0, frames, block):
            chunk = to_mono(audio.read(min(block, frames - first), dtype="float32", always_2d=True))
            out[first : first + len(chunk)] = chunk
            if len(chunk) < min(block, frames - first):  # a truncated file: fewer frames than its header says
                return out[: first + len(chunk)]
        return out
    period_in = rate // math.gcd(rate, SAMPLE_RATE)  # input frames per whole resampling period
    period_out = SAMPLE_RATE // math.gcd(rate, SAMPLE_RATE)
    block = max(1, int(DECODE_BLOCK_SECONDS * rate) // period_in) * period_in
    context = max(1, int(math.ceil(RESAMPLE_CONTEXT_SECONDS * rate / period_in))) * period_in
    written = 0
    for first in range(0, frames, block):
        left = min(context, first)
        audio.seek(start + first - left)
        wanted = left + min(block, frames - first) + min(context, frames - first - min(block, frames - first))
        chunk = to_mono(audio.read(wanted, dtype="float32", always_2d=True))
        resampled = torchaudio.functional.resample(torch.from_numpy(chunk), rate, SAMPLE_RATE).numpy()
        keep = resampled[left // period_in * period_out :][: resampled_length(min(block, frames - first), rate)]
        out[written : written + len(keep)] = keep
        written += len(keep)
        if len(chunk) < wanted:  # a truncated file
            break
    return out[:written]


def decode_audio(
    source: str | bytes,
    offset: float = 0.0,
    duration: float | None = None,
    storage_options: dict | None = None,
) -> np.ndarray:
    """16 kHz mono float32 samples of `source` from `offset` seconds for `duration` seconds
    (to the end when None). Raises FileNotFoundError for a missing file (ConnectionError for an HTTP
    server that does not serve it: unreachable, 403, 5xx) and AudioDecodeError for
    anything that is not decodable audio (0-byte file, text renamed .mp3, truncated header...)."""
    name = _name(source)
    try:
        handle = _open(source, storage_options)
    except FileNotFoundError as error:
        raise _missing(name, error) from None
    with handle as f:
        try:
            with sf.SoundFile(f) as audio:
                rate = audio.samplerate
                start = int(round(offset * rate))
                if start > audio.frames:
                    raise AudioDecodeError(
                        f"offset {offset:.3f}s is past the end of {name} ({audio.frames / rate:.3f}s)"
                    )
                frames = -1 if duration is None else int(round(duration * rate))
                if start:
                    audio.seek(start)
                return read_resampled(audio, frames)
        except (sf.LibsndfileError, RuntimeError, TypeError) as error:
            if f.seek(0, io.SEEK_END) == 0:
                raise AudioDecodeError(f"cannot decode {name}: the file is empty (0 bytes)") from None
            decoded = _decode_container(f, name, offset, duration) if _unrecognised(error) else "not tried"
            if isinstance(decoded, str):  # FFmpeg found no audio either: both say why
                raise AudioDecodeError(f"cannot decode {name}: {_reason(error)}{_also(decoded)}") from None
            return decoded


# ---------------------------------------------------------------- containers, through FFmpeg (PyAV)


FIFO_BLOCK_SECONDS = 10.0  # resampled at a time: 360 calls an hour, a few MB held


class _Samples:
    """A float32 buffer that grows by doubling: sized from the container's duration, it is filled
    once; a container that gives none (or understates it) costs a copy per doubling."""

    def __init__(self, capacity: int):
        self.data = np.empty(max(capacity, 1), dtype=np.float32)
        self.size = 0

    def add(self, samples: np.ndarray) -> None:
        if self.size + len(samples) > len(self.data):
            grown = np.empty(max(2 * len(self.data), self.size + len(samples)), dtype=np.float32)
            grown[: self.size] = self.data[: self.size]
            self.data = grown
        self.data[self.size : self.size + len(samples)] = samples
        self.size += len(samples)


def _also(ffmpeg: str) -> str:
    return "" if ffmpeg == "not tried" else f" (FFmpeg: {ffmpeg})"


def _open_container(f):
    """(container, its first audio stream), or why FFmpeg cannot give one."""
    import av

    f.seek(0)
    try:
        container = av.open(f, mode="r")
    except (av.FFmpegError, ValueError) as error:
        return getattr(error, "strerror", None) or str(error)
    if not container.streams.audio:
        container.close()
        return "no audio stream"
    return container, container.streams.audio[0]


def _container_seconds(container, stream) -> float | None:
    if container.duration:
        return container.duration / 1_000_000  # FFmpeg's AV_TIME_BASE
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return None


def _container_info(f) -> AudioInfo | str:
    opened = _open_container(f)
    if isinstance(opened, str):
        return opened
    container, stream = opened
    with container:
        seconds = _container_seconds(container, stream)
        if seconds is None:  # a stream that says nothing of its length: decoded to count it
            seconds = len(_decode_opened(container, stream, 0.0, None)) / SAMPLE_RATE
            return AudioInfo(SAMPLE_RATE, stream.channels, int(round(seconds * SAMPLE_RATE)))
        return AudioInfo(stream.rate, stream.channels, int(round(seconds * stream.rate)))


def _decode_container(f, name: str, offset: float, duration: float | None) -> np.ndarray | str:
    """The `offset`/`duration` slice of a container libsndfile does not read, 16 kHz mono float32 (the
    channels' mean, as `to_mono`); or why FFmpeg gives no audio from it."""
    opened = _open_container(f)
    if isinstance(opened, str):
        return opened
    container, stream = opened
    with container:
        seconds = _container_seconds(container, stream)
        if seconds is not None and offset > seconds:
            raise AudioDecodeError(f"offset {offset:.3f}s is past the end of {name} ({seconds:.3f}s)")
        samples = _decode_opened(container, stream, offset, duration)
    if len(samples) or seconds == 0:
        return samples
    if offset > 0:  # a duration estimated from the bit rate (raw AAC) can run past the last sample
        raise AudioDecodeError(f"offset {offset:.3f}s is past the end of {name}")
    return "no audio decoded"


def _decode_opened(container, stream, offset: float, duration: float | None) -> np.ndarray:
    import av

    wanted = None if duration is None else int(round(duration * SAMPLE_RATE))
    seconds = _container_seconds(container, stream)
    expected = wanted if wanted is not None else int(((seconds or 60.0) - offset) * SAMPLE_RATE) + SAMPLE_RATE
    out = _Samples(expected)
    # the file's time 0 is its stream's first sample (an Opus or AAC stream may start a few ms in)
    start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    if offset > 0:  # to a packet a second before it (a decoder that restarts there drops its preroll)
        try:
            container.seek(int((start + max(offset - 1.0, 0.0)) / stream.time_base), stream=stream, backward=True)
        except av.FFmpegError:  # a stream that cannot seek: decoded from its start, `skip` drops the rest
            pass
    # the stream's own channel layout: the mean downmix is done here, as for every other format
    resampler = av.AudioResampler(format="fltp", layout=stream.layout, rate=SAMPLE_RATE)
    skip = None  # samples still to drop before `offset`, known from the first decoded frame's time

    def take(frames) -> bool:
        nonlocal skip
        for frame in frames:
            mono = to_mono(frame.to_ndarray().T)
            dropped = min(max(skip or 0, 0), len(mono))
            skip = max(skip or 0, 0) - dropped
            out.add(mono[dropped:])
            if wanted is not None and out.size >= wanted:
                return True
        return False

    # Decoded frames (1,024 samples of AAC) queue in a FIFO and are resampled and downmixed a block at a
    # time: per-frame calls cost 5 times FFmpeg's own decoding (an hour of M4A: 29 CPU-s against 6).
    fifo = av.AudioFifo()
    block = 0

    def drain(final: bool) -> bool:
        while fifo.samples and (final or fifo.samples >= block):
            if take(resampler.resample(fifo.read(min(block, fifo.samples)))):
                return True
        return final and take(resampler.resample(None))

    try:
        for frame in container.decode(stream):
            if skip is None:  # samples before `offset` to drop; a first frame that starts after it is placed
                skip = int(round((start + offset - (frame.time or 0.0)) * SAMPLE_RATE))
                out.add(np.zeros(max(-skip, 0), dtype=np.float32))
                block = int(FIFO_BLOCK_SECONDS * frame.sample_rate)
            frame.pts = None  # the FIFO checks timestamps for gaps; the first frame's time placed the signal
            fifo.write(frame)
            if fifo.samples >= block and drain(final=False):
                break
        else:
            drain(final=True)
    except av.FFmpegError:  # damaged further on: what decoded is kept, as libsndfile's path keeps it
        drain(final=True)
    return out.data[: out.size if wanted is None else min(out.size, wanted)]
