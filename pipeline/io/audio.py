"""Audio in: the one decoder of the project (API, Ray decode stage and tests all use it).

Any path or URI fsspec can open (or raw bytes), any format libsndfile reads (WAV, FLAC, OGG, MP3),
any sample rate and channel count, in; 16 kHz mono float32 out. Only the `offset`/`duration` slice
is read: soundfile seeks, and on object storage fsspec turns that into range requests. What libsndfile
does not read (M4A/AAC, MP4, WebM/Opus, WMA, AMR; G.722/G.726 WAVs, ALAC) is decoded by FFmpeg's
libraries through PyAV (`pipeline.io.containers`) into the same 16 kHz mono signal.
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


# libsndfile's SF_ERR_SYSTEM: the operating system failed the read, which another decoder would not change
SYSTEM_ERROR = 2


def _ffmpeg_may_read(error: Exception) -> bool:
    """Whatever libsndfile could not read FFmpeg tries: containers it does not know (M4A, WebM:
    "Format not recognised"), and codecs inside formats it knows (G.722 or G.726 telephony WAVs:
    "Malformed 'fmt ' chunk"; ALAC in CAF: "unsupported encoding"). A file neither reads is an
    error naming both reasons."""
    return getattr(error, "code", None) not in (None, SYSTEM_ERROR)


def _also(ffmpeg: str) -> str:
    return "" if ffmpeg == "not tried" else f" (FFmpeg: {ffmpeg})"


def audio_info(source: str | bytes, storage_options: dict | None = None) -> AudioInfo:
    from pipeline.io.containers import container_info  # it imports this module: imported when called

    with _open(source, storage_options) as f:
        try:
            info = sf.info(f)
        except (sf.LibsndfileError, RuntimeError) as error:
            found = container_info(f) if _ffmpeg_may_read(error) else "not tried"
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
    from pipeline.io.containers import decode_container  # it imports this module: imported when called

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
            decoded = decode_container(f, name, offset, duration) if _ffmpeg_may_read(error) else "not tried"
            if isinstance(decoded, str):  # FFmpeg found no audio either: both say why
                raise AudioDecodeError(f"cannot decode {name}: {_reason(error)}{_also(decoded)}") from None
            return decoded
