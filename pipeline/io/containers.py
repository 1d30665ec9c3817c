"""Audio libsndfile does not read, decoded by FFmpeg's libraries through PyAV for `pipeline.io.audio`:
containers it does not recognise (M4A/AAC, MP4, WebM/Opus, WMA, AMR...) and codecs inside formats it
knows (G.722/G.726 WAVs, ALAC in CAF). Of each, the first audio stream, resampled by libswresample and
downmixed by the channels' mean into the same 16 kHz mono float32 as every other format. Where FFmpeg
gives no audio, the functions return why (a string), so that the caller's error names both decoders."""

from __future__ import annotations

import numpy as np

from pipeline.io.audio import SAMPLE_RATE, AudioDecodeError, AudioInfo, to_mono

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


def _with_container(f, use):
    """`use(container, its first audio stream, its seconds or None)` on the open container, or why FFmpeg
    cannot open it or finds no audio stream in it."""
    opened = _open_container(f)
    if isinstance(opened, str):
        return opened
    container, stream = opened
    with container:
        return use(container, stream, _container_seconds(container, stream))


def container_info(f) -> AudioInfo | str:
    def info(container, stream, seconds: float | None) -> AudioInfo:
        if seconds is None:  # a stream that says nothing of its length: decoded to count it
            samples = len(_decode_opened(container, stream, seconds, 0.0, None))
            return AudioInfo(SAMPLE_RATE, stream.channels, samples)
        return AudioInfo(stream.rate, stream.channels, int(round(seconds * stream.rate)))

    return _with_container(f, info)


def decode_container(f, name: str, offset: float, duration: float | None) -> np.ndarray | str:
    """The `offset`/`duration` slice of a file libsndfile does not read, 16 kHz mono float32 (the
    channels' mean, as `to_mono`); or why FFmpeg gives no audio from it."""

    def decode(container, stream, seconds: float | None) -> np.ndarray | str:
        if seconds is not None and offset > seconds:
            raise AudioDecodeError(f"offset {offset:.3f}s is past the end of {name} ({seconds:.3f}s)")
        samples = _decode_opened(container, stream, seconds, offset, duration)
        if len(samples) or seconds == 0:
            return samples
        if offset > 0:  # a duration estimated from the bit rate (raw AAC) can run past the last sample
            raise AudioDecodeError(f"offset {offset:.3f}s is past the end of {name}")
        return "no audio decoded"

    return _with_container(f, decode)


def _decode_opened(container, stream, seconds: float | None, offset: float, duration: float | None) -> np.ndarray:
    import av

    wanted = None if duration is None else int(round(duration * SAMPLE_RATE))
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
    skip = 0  # samples still to drop before `offset`, known from the first decoded frame's time

    def take(frames) -> bool:
        nonlocal skip
        for frame in frames:
            mono = to_mono(frame.to_ndarray().T)
            dropped = min(skip, len(mono))
            skip -= dropped
            out.add(mono[dropped:])
            if wanted is not None and out.size >= wanted:
                return True
        return False

    # Decoded frames (1,024 samples of AAC) queue in a FIFO and are resampled and downmixed a block at a
    # time: per-frame calls cost 5 times FFmpeg's own decoding (an hour of M4A: 29 CPU-s against 6).
    fifo = av.AudioFifo()
    block = 0  # samples resampled at a time, at the stream's rate: 0 until the first frame is decoded

    def drain(final: bool) -> bool:
        while fifo.samples and (final or fifo.samples >= block):
            if take(resampler.resample(fifo.read(min(block, fifo.samples)))):
                return True
        return final and take(resampler.resample(None))

    try:
        for frame in container.decode(stream):
            if not block:  # samples before `offset` to drop; a first frame that starts after it is placed
                late = int(round((start + offset - (frame.time or 0.0)) * SAMPLE_RATE))
                out.add(np.zeros(max(-late, 0), dtype=np.float32))
                skip = max(late, 0)
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
