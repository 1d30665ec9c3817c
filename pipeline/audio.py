"""Audio in: the one decoder of the project (API, Ray decode stage and tests all use it).

Any path or URI fsspec can open (or raw bytes), any format libsndfile reads (WAV, FLAC, OGG, MP3),
any sample rate and channel count, in; 16 kHz mono float32 out. Only the `offset`/`duration` slice
is read: soundfile seeks, and on object storage fsspec turns that into range requests.
"""

from __future__ import annotations

import io
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


def audio_info(source: str | bytes, storage_options: dict | None = None) -> AudioInfo:
    with _open(source, storage_options) as f:
        try:
            info = sf.info(f)
        except (sf.LibsndfileError, RuntimeError) as error:
            raise AudioDecodeError(f"cannot decode {_name(source)}: {error}") from None
    return AudioInfo(info.samplerate, info.channels, info.frames)


def to_mono_16k(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """(frames, channels) at any rate to (frames,) float32 at 16 kHz: mean downmix, then torchaudio's
    band-limited resampler. Non-finite samples (NaN/Inf in float files) become 0."""
    mono = samples.mean(axis=1) if samples.ndim == 2 else samples
    mono = np.nan_to_num(mono.astype(np.float32, copy=False), nan=0.0, posinf=0.0, neginf=0.0)
    if sample_rate != SAMPLE_RATE and mono.size:
        mono = torchaudio.functional.resample(torch.from_numpy(mono), sample_rate, SAMPLE_RATE).numpy()
    return np.ascontiguousarray(mono, dtype=np.float32)


def decode_audio(
    source: str | bytes,
    offset: float = 0.0,
    duration: float | None = None,
    storage_options: dict | None = None,
) -> np.ndarray:
    """16 kHz mono float32 samples of `source` from `offset` seconds for `duration` seconds
    (to the end when None). Raises FileNotFoundError for a missing file and AudioDecodeError for
    anything that is not decodable audio (0-byte file, text renamed .mp3, truncated header...)."""
    name = _name(source)
    try:
        handle = _open(source, storage_options)
    except FileNotFoundError:
        raise FileNotFoundError(f"audio file not found: {name}") from None
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
                samples = audio.read(frames, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, TypeError) as error:
            if f.seek(0, io.SEEK_END) == 0:
                raise AudioDecodeError(f"cannot decode {name}: the file is empty (0 bytes)") from None
            raise AudioDecodeError(f"cannot decode {name}: {error}") from None
    return to_mono_16k(samples, rate)
