"""Simulated conversations with exact reference labels, from one-speaker read speech (LibriSpeech).

Why the labels are exact: every source utterance is high-passed (some LibriSpeech files carry a DC
offset of a quarter of full scale) and cut into speech regions by an energy threshold on 10 ms frames
(pauses shorter than `min_pause_sec` stay inside a region, as in DIHARD-style references; specks
shorter than `min_speech_sec` are not speech). A turn is a crop of one utterance, and only the
speech regions of the crop are placed in the mix, each becoming one reference `Turn`: what lies
between them (silence, breath, sub-threshold tails) is left out rather than labelled. So the clean
mix is exactly zero outside the reference and every reference segment holds above-threshold speech,
to the 10 ms frame. All times are on that frame grid.

Turns alternate between speakers (the next speaker is drawn among the others; the first turns
introduce every speaker once). Overlap is made by starting a turn before the previous one ends: a
controller starts an overlap of a random size (0.5-1.5 s, or more if more is missing) whenever the
overlap still missing to reach `overlap_ratio` (overlapped time / time with any speech) exceeds half
that size, so the ratio of a finished conversation is close to the one asked for, with no bias.
Structure, gains and noise come from separate child streams of one `numpy.random.SeedSequence(seed)`,
so a seed gives the same conversation whatever the SNR.

Far-field conditions (`far_field_conditions`), for the kind of audio a meeting-room microphone
hears: each speaker through a room of its own distance (a synthetic impulse response: a direct
path and an exponentially decaying diffuse tail of a given RT60 and direct-to-reverberant ratio),
talkers far below the loudest one, and babble (other speakers of the split, unlabelled, summed
into a murmur) under the stationary noise. Labels stay those of the dry speech.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple, Sequence

import numpy as np
import scipy.signal
import soundfile as sf

from benchmarks.data import add_data_argument, librispeech_dir, librispeech_speakers, speaker_files
from pipeline.io.audio import SAMPLE_RATE, decode_audio
from pipeline.io.manifest import ManifestRow, write_manifest
from pipeline.io.rttm import Turn, write_rttm

FRAMES_PER_SEC = 100
FRAME_SAMPLES = SAMPLE_RATE // FRAMES_PER_SEC
ACTIVE_LEVEL_DBFS = -26.0  # every source is brought to this speech level before the speaker gain
SPEECH_RANGE_DB = 30.0  # frames more than this below the utterance's loud frames are not speech,
NOISE_MARGIN_DB = 10.0  # nor frames less than this above its noise floor (3rd percentile),
WEAK_REGION_DB = 25.0  # nor whole regions this far below the loud frames on average (breaths)
HIGH_PASS = scipy.signal.butter(4, 60, "highpass", fs=SAMPLE_RATE, output="sos")
FADE_SAMPLES = SAMPLE_RATE // 200  # 5 ms ramps where a region is cut out of its utterance
PEAK_LIMIT = 0.99
OVERLAP_EVENT_SEC = (0.5, 1.5)
MAX_OVERLAP_FRACTION = 0.5  # of the shorter of the two turns, so the earlier speaker is heard alone first
NOISE_COLORS = ("white", "pink")


@dataclass(frozen=True)
class SimulationConfig:
    num_speakers: int = 2
    duration_sec: float = 60.0
    mean_pause_sec: float = 0.5
    overlap_ratio: float = 0.1
    turn_sec_range: tuple[float, float] = (1.5, 6.0)
    gain_db_range: tuple[float, float] = (-3.0, 3.0)
    snr_db: float | None = None
    noise_color: str = "white"
    min_pause_sec: float = 0.2
    min_speech_sec: float = 0.1
    seed: int = 0
    source_dir: str = field(default_factory=librispeech_dir)
    speaker_pool: tuple[str, ...] | None = None  # draw speakers from these ids only (a split's half)
    reverb_rt60: float | None = None  # seconds; None: dry
    drr_db_range: tuple[float, float] = (0.0, 10.0)  # direct-to-reverberant ratio, one per speaker (distance)
    babble_snr_db: float | None = None  # speech over babble of other speakers of the pool; None: none
    babble_talkers: int = 5
    # Speakers who say one short thing (a backchannel, a word): each has a single turn of
    # `minor_turn_sec_range`, as in meetings where a participant listens; the last of the first round.
    minor_speakers: int = 0
    minor_turn_sec_range: tuple[float, float] = (0.3, 1.5)

    def __post_init__(self):
        if self.num_speakers < 1:
            raise ValueError(f"num_speakers must be >= 1, got {self.num_speakers}")
        if not 0.0 <= self.overlap_ratio < MAX_OVERLAP_FRACTION:
            raise ValueError(f"overlap_ratio must be in [0, {MAX_OVERLAP_FRACTION}), got {self.overlap_ratio}")
        if not 0 < self.turn_sec_range[0] <= self.turn_sec_range[1]:
            raise ValueError(f"turn_sec_range must be 0 < low <= high, got {self.turn_sec_range}")
        if self.gain_db_range[0] > self.gain_db_range[1]:
            raise ValueError(f"gain_db_range must be low <= high, got {self.gain_db_range}")
        if self.noise_color not in NOISE_COLORS:
            raise ValueError(f"noise_color must be one of {NOISE_COLORS}, got {self.noise_color!r}")
        if not 0 <= self.minor_speakers < self.num_speakers:
            raise ValueError(f"minor_speakers must be in [0, num_speakers), got {self.minor_speakers}")
        if self.duration_sec < self.turn_sec_range[0] * self.num_speakers:
            raise ValueError(f"{self.duration_sec} s is too short for {self.num_speakers} speakers")


@dataclass
class Conversation:
    uniq_id: str
    audio: np.ndarray
    turns: list[Turn]
    speaker_gains_db: dict[str, float]
    sample_rate: int = SAMPLE_RATE

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sample_rate

    @property
    def overlap_ratio(self) -> float:
        return speech_overlap_ratio(self.turns)


@dataclass(frozen=True)
class SourceUtterance:
    """A level-normalised utterance and its speech regions, `[start, end)` in 10 ms frames."""

    samples: np.ndarray
    regions: np.ndarray


def speech_overlap_ratio(turns: Sequence[Turn]) -> float:
    """Time with two or more speakers over time with at least one (0 when there is no speech)."""
    overlapped, speech = _overlapped_and_speech_time(
        np.array([t.start for t in turns], dtype=float), np.array([t.end for t in turns], dtype=float)
    )
    return overlapped / speech if speech else 0.0


def _overlapped_and_speech_time(starts: np.ndarray, ends: np.ndarray) -> tuple[float, float]:
    """A sweep over turn boundaries: how many speak between consecutive boundaries."""
    times = np.concatenate([starts, ends])
    steps = np.concatenate([np.ones(len(starts)), -np.ones(len(ends))])
    order = np.argsort(times, kind="stable")
    active = np.cumsum(steps[order])[:-1]
    spans = np.diff(times[order])
    return float(spans[active >= 2].sum()), float(spans[active >= 1].sum())


def _runs(mask: np.ndarray) -> np.ndarray:
    """`[start, end)` of each run of True, shape (k, 2)."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return np.stack([np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)], axis=1)


def speech_regions(samples: np.ndarray, min_pause_frames: int, min_speech_frames: int) -> np.ndarray:
    """Speech regions of a one-speaker utterance without DC, in 10 ms frames: frames (smoothed over
    30 ms) within SPEECH_RANGE_DB of the loud ones and NOISE_MARGIN_DB above the floor; shorter pauses
    bridged, then specks shorter than `min_speech_frames` or weaker than WEAK_REGION_DB dropped."""
    frames = samples[: len(samples) // FRAME_SAMPLES * FRAME_SAMPLES].reshape(-1, FRAME_SAMPLES)
    power = np.convolve((frames.astype(np.float64) ** 2).mean(axis=1), np.ones(3) / 3, mode="same")
    level_db = 10 * np.log10(power + 1e-12)
    floor_db, loud_db = np.percentile(level_db, [3, 99])
    regions = _runs(level_db > max(loud_db - SPEECH_RANGE_DB, floor_db + NOISE_MARGIN_DB))
    if len(regions) > 1:
        keep_gap = regions[1:, 0] - regions[:-1, 1] >= min_pause_frames
        regions = np.stack([regions[np.r_[True, keep_gap], 0], regions[np.r_[keep_gap, True], 1]], axis=1)
    lengths = regions[:, 1] - regions[:, 0]
    energy = np.concatenate([[0.0], np.cumsum(power)])
    mean_db = 10 * np.log10((energy[regions[:, 1]] - energy[regions[:, 0]]) / np.maximum(lengths, 1) + 1e-12)
    return regions[(lengths >= min_speech_frames) & (mean_db > loud_db - WEAK_REGION_DB)]


@lru_cache(maxsize=512)
def load_source(path: str, min_pause_frames: int, min_speech_frames: int) -> SourceUtterance:
    """Decoded once per process, high-passed (zero phase, so regions stay in place) and brought to
    ACTIVE_LEVEL_DBFS over its speech frames."""
    samples = scipy.signal.sosfiltfilt(HIGH_PASS, decode_audio(path).astype(np.float64))
    regions = speech_regions(samples, min_pause_frames, min_speech_frames)
    if not len(regions):
        raise ValueError(f"no speech found in {path}")
    speech = np.concatenate([samples[s * FRAME_SAMPLES : e * FRAME_SAMPLES] for s, e in regions])
    level_db = 10 * np.log10(np.mean(speech**2))
    samples = (samples * 10 ** ((ACTIVE_LEVEL_DBFS - level_db) / 20)).astype(np.float32)
    samples.setflags(write=False)
    regions.setflags(write=False)
    return SourceUtterance(samples, regions)


def _crop_regions(regions: np.ndarray, length: int, min_speech: int, rng: np.random.Generator) -> np.ndarray:
    """Speech regions inside a window of `length` frames at a random place in the utterance's speech.
    The window's start moves on to the next region with at least `min_speech` frames left, so the
    crop begins with speech and is never empty."""
    first, last = regions[0, 0], regions[-1, 1]
    start = int(rng.integers(first, max(first, last - length) + 1))
    speech_left = regions[:, 1] - np.maximum(regions[:, 0], start)
    start = max(start, int(regions[np.argmax(speech_left >= min_speech), 0]))
    clipped = np.clip(regions, start, start + length)
    return clipped[clipped[:, 1] - clipped[:, 0] >= min(min_speech, length)]


def _frames(seconds: float) -> int:
    return int(round(seconds * FRAMES_PER_SEC))


def _faded(segment: np.ndarray) -> np.ndarray:
    ramp_length = min(FADE_SAMPLES, len(segment) // 2)
    ramp = np.linspace(0.0, 1.0, ramp_length, endpoint=False, dtype=np.float32)
    segment = segment.copy()
    segment[:ramp_length] *= ramp
    segment[len(segment) - ramp_length :] *= ramp[::-1]
    return segment


def _noise(num_samples: int, color: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-power white or pink (1/f power) noise."""
    noise = rng.standard_normal(num_samples)
    if color == "pink":
        spectrum = np.fft.rfft(noise)
        frequency = np.arange(len(spectrum), dtype=np.float64)
        frequency[0] = 1.0
        noise = np.fft.irfft(spectrum / np.sqrt(frequency), n=num_samples)
    return noise / np.sqrt(np.mean(noise**2))


class _Placement(NamedTuple):
    """A turn: speech regions of `source` (its frames) moved by `shift` frames onto the conversation."""

    speaker: str
    source: SourceUtterance
    source_regions: np.ndarray
    shift: int

    @property
    def regions(self) -> np.ndarray:
        return self.source_regions + self.shift


def _place_turns(
    config: SimulationConfig, speakers: list[str], files: dict[str, tuple[str, ...]], rng: np.random.Generator
) -> list[_Placement]:
    """Turn after turn until the next one does not fit; see the module docstring for the rules."""
    min_pause, min_speech = _frames(config.min_pause_sec), _frames(config.min_speech_sec)
    min_turn, total = _frames(config.turn_sec_range[0]), _frames(config.duration_sec)
    placements: list[_Placement] = []
    placed_regions = np.zeros((0, 2), dtype=np.int64)
    last_end = {speaker: -min_pause for speaker in speakers}
    cursor, current, previous_extent = 0, None, 0
    minor = set(speakers[len(speakers) - config.minor_speakers :]) if config.minor_speakers else set()
    talkers = [s for s in speakers if s not in minor]  # after the first round
    while True:
        if len(placements) < len(speakers):
            speaker = speakers[len(placements)]
        else:
            others = [s for s in talkers if s != current] or talkers
            speaker = others[int(rng.integers(len(others)))]
        source = load_source(str(rng.choice(files[speaker])), min_pause, min_speech)
        turn_range = config.minor_turn_sec_range if speaker in minor else config.turn_sec_range
        regions = _crop_regions(source.regions, _frames(rng.uniform(*turn_range)), min_speech, rng)
        pause = _frames(rng.exponential(config.mean_pause_sec)) if config.mean_pause_sec > 0 else 0
        overlap_event = rng.uniform(*OVERLAP_EVENT_SEC) * FRAMES_PER_SEC

        extent = int(regions[-1, 1] - regions[0, 0])
        overlapped, speech = _overlapped_and_speech_time(placed_regions[:, 0], placed_regions[:, 1])
        new_speech = float((regions[:, 1] - regions[:, 0]).sum())
        missing_overlap = (config.overlap_ratio * (speech + new_speech) - overlapped) / (1 + config.overlap_ratio)
        if current is not None and speaker != current and missing_overlap >= overlap_event / 2:
            overlap = max(missing_overlap, overlap_event)
            start = cursor - int(min(overlap, MAX_OVERLAP_FRACTION * min(previous_extent, extent)))
        else:
            start = cursor + pause
        start = max(start, last_end[speaker] + min_pause)

        room = total - start
        if room < min(min_turn, extent):
            break
        regions = np.clip(regions, None, regions[0, 0] + room)
        regions = regions[regions[:, 1] - regions[:, 0] >= min_speech]
        if not len(regions):
            break
        placement = _Placement(speaker, source, regions, start - int(regions[0, 0]))
        placements.append(placement)
        placed_regions = np.concatenate([placed_regions, placement.regions])
        cursor = last_end[speaker] = int(placement.regions[-1, 1])
        current, previous_extent = speaker, cursor - start
    return placements


def _mix(placements: list[_Placement], gains_db: dict[str, float], total_frames: int) -> np.ndarray:
    audio = np.zeros(total_frames * FRAME_SAMPLES, dtype=np.float64)
    for placement in placements:
        gain = 10 ** (gains_db[placement.speaker] / 20)
        for (source_start, source_end), (start, end) in zip(placement.source_regions, placement.regions):
            segment = placement.source.samples[source_start * FRAME_SAMPLES : source_end * FRAME_SAMPLES]
            audio[start * FRAME_SAMPLES : end * FRAME_SAMPLES] += gain * _faded(segment)
    return audio


def _room_response(rt60: float, drr_db: float, rng: np.random.Generator) -> np.ndarray:
    """A synthetic impulse response: a unit direct path, then 2.5 ms later a diffuse tail of
    Gaussian noise decaying by 60 dB in `rt60` seconds, `drr_db` below the direct path in energy."""
    length = int(rt60 * SAMPLE_RATE)
    time = np.arange(length) / SAMPLE_RATE
    tail = rng.standard_normal(length) * np.exp(-3 * np.log(10) * time / rt60)
    tail[: int(0.0025 * SAMPLE_RATE)] = 0.0
    tail *= np.sqrt(10 ** (-drr_db / 10) / np.sum(tail**2))
    tail[0] = 1.0
    return tail


def _reverberant_mix(
    placements: list[_Placement], gains_db: dict[str, float], total_frames: int, config: SimulationConfig, rng
) -> np.ndarray:
    """Each speaker's dry track through a room response of its own distance, at its dry speech level."""
    audio = np.zeros(total_frames * FRAME_SAMPLES, dtype=np.float64)
    for speaker in gains_db:
        dry = _mix([p for p in placements if p.speaker == speaker], gains_db, total_frames)
        response = _room_response(config.reverb_rt60, float(rng.uniform(*config.drr_db_range)), rng)
        wet = scipy.signal.fftconvolve(dry, response)[: len(dry)]
        regions = np.concatenate([p.regions for p in placements if p.speaker == speaker])
        audio += wet * np.sqrt(_speech_power(dry, regions) / max(_speech_power(wet, regions), 1e-20))
    return audio


def _babble(
    num_samples: int, talkers: list[str], files: dict[str, tuple[str, ...]], config: SimulationConfig, rng
) -> np.ndarray:
    """Unit-power murmur: one utterance of each of `talkers`, looped from a random point, summed."""
    min_pause, min_speech = _frames(config.min_pause_sec), _frames(config.min_speech_sec)
    babble = np.zeros(num_samples, dtype=np.float64)
    for talker in talkers:
        samples = load_source(str(rng.choice(files[talker])), min_pause, min_speech).samples
        babble += np.roll(np.resize(samples, num_samples), int(rng.integers(num_samples)))
    return babble / np.sqrt(np.mean(babble**2) + 1e-20)


def _speech_power(audio: np.ndarray, regions: np.ndarray) -> float:
    """Mean power over the frames where anyone speaks: the S of the SNR."""
    in_speech = np.zeros(len(audio) // FRAME_SAMPLES, dtype=bool)
    for start, end in regions:
        in_speech[start:end] = True
    return float(np.mean(audio.reshape(-1, FRAME_SAMPLES)[in_speech] ** 2))


def simulate_conversation(config: SimulationConfig, uniq_id: str | None = None) -> Conversation:
    """One conversation of exactly `config.duration_sec` seconds (16 kHz mono float32)."""
    # a third stream for the room and the babble: the first two (and dry conversations) stay as they were
    structure_rng, noise_rng, room_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(config.seed).spawn(3)
    )
    files = speaker_files(config.source_dir)
    if config.speaker_pool is not None:
        unknown = sorted(set(config.speaker_pool) - set(files))
        if unknown:
            raise ValueError(f"speakers {unknown[:5]} have no file in {config.source_dir}")
        files = {speaker: files[speaker] for speaker in sorted(config.speaker_pool)}
    if config.num_speakers > len(files):
        raise ValueError(f"{config.num_speakers} speakers asked, the pool has {len(files)}")
    speakers = [str(s) for s in structure_rng.choice(list(files), config.num_speakers, replace=False)]
    gains_db = dict(zip(speakers, structure_rng.uniform(*config.gain_db_range, size=len(speakers)).tolist()))
    placements = _place_turns(config, speakers, files, structure_rng)
    if len(placements) < len(speakers):
        raise ValueError(f"{config.duration_sec} s was not long enough for all {len(speakers)} speakers to speak")

    total_frames = _frames(config.duration_sec)
    if config.reverb_rt60 is None:
        audio = _mix(placements, gains_db, total_frames)
    else:
        audio = _reverberant_mix(placements, gains_db, total_frames, config, room_rng)
    speech_power = _speech_power(audio, np.concatenate([p.regions for p in placements]))
    if config.babble_snr_db is not None:
        others = sorted(set(files) - set(speakers))
        talkers = [str(s) for s in room_rng.choice(others, min(config.babble_talkers, len(others)), replace=False)]
        babble = _babble(len(audio), talkers, files, config, room_rng)
        audio += babble * np.sqrt(speech_power / 10 ** (config.babble_snr_db / 10))
    if config.snr_db is not None:
        noise_power = speech_power / 10 ** (config.snr_db / 10)
        audio += _noise(len(audio), config.noise_color, noise_rng) * np.sqrt(noise_power)
    peak = np.abs(audio).max(initial=0.0)
    if peak > PEAK_LIMIT:
        audio *= PEAK_LIMIT / peak

    turns = sorted(
        (
            Turn(start / FRAMES_PER_SEC, end / FRAMES_PER_SEC, placement.speaker)
            for placement in placements
            for start, end in placement.regions.tolist()
        ),
        key=lambda turn: (turn.start, turn.speaker),
    )
    return Conversation(uniq_id or f"sim-seed{config.seed}", audio.astype(np.float32), turns, gains_db)


AUDIO_FORMATS = {  # name: (sample rate, channels); the decoder brings every one back to 16 kHz mono
    "16k": (16_000, 1),
    "8k": (8_000, 1),
    "44k-stereo": (44_100, 2),
}
VARIED_FORMATS = (("16k", 0.7), ("8k", 0.15), ("44k-stereo", 0.15))


def write_audio(path: str, audio: np.ndarray, audio_format: str = "16k") -> None:
    """A 16 kHz mono conversation as 16-bit PCM in `audio_format`; the second channel of a stereo
    file is the first 4 dB down (a second microphone further away), so labels hold for both."""
    rate, channels = AUDIO_FORMATS[audio_format]
    if rate != SAMPLE_RATE:
        divisor = np.gcd(rate, SAMPLE_RATE)
        audio = scipy.signal.resample_poly(audio, rate // divisor, SAMPLE_RATE // divisor).astype(np.float32)
    if channels == 2:
        audio = np.stack([audio, audio * 10 ** (-4 / 20)], axis=1)
    sf.write(path, np.clip(audio, -1.0, 1.0), rate, subtype="PCM_16")


def varied_conditions(rng: np.random.Generator) -> tuple[dict, str]:
    """Per-conversation conditions for robustness corpora: overlap 0-25 %, speaker gains up to
    ±8 dB, clean or white/pink noise at 5-30 dB SNR, and some 8 kHz and 44.1 kHz stereo files."""
    spread = float(rng.uniform(0.0, 8.0))
    changes = {
        "overlap_ratio": round(float(rng.uniform(0.0, 0.25)), 3),
        "gain_db_range": (-spread, spread),
        "snr_db": None if rng.random() < 0.4 else round(float(rng.uniform(5.0, 30.0)), 1),
        "noise_color": str(rng.choice(NOISE_COLORS)),
    }
    names, weights = zip(*VARIED_FORMATS)
    return changes, str(rng.choice(names, p=weights))


def far_field_conditions(rng: np.random.Generator) -> tuple[dict, str]:
    """Per-conversation conditions of a meeting-room microphone: reverberation (RT60 0.3-0.9 s, each
    speaker 0-10 dB direct-to-reverberant), talkers spread over 6-18 dB below the loudest, babble at
    15-30 dB (at 5-20 dB it is a crowd the segmentation rightly hears as speech: 18 % false alarm on
    dev) and pink or white noise at 10-30 dB SNR, overlap 5-25 %; 16 kHz files."""
    spread = float(rng.uniform(6.0, 18.0))
    changes = {
        "overlap_ratio": round(float(rng.uniform(0.05, 0.25)), 3),
        "gain_db_range": (-spread, 0.0),
        "reverb_rt60": round(float(rng.uniform(0.3, 0.9)), 2),
        "babble_snr_db": round(float(rng.uniform(15.0, 30.0)), 1),
        "snr_db": round(float(rng.uniform(10.0, 30.0)), 1),
        "noise_color": str(rng.choice(NOISE_COLORS)),
    }
    return changes, "16k"


def write_corpus(
    out_dir: str,
    num_conversations: int,
    base_config: SimulationConfig = SimulationConfig(),
    speakers_range: tuple[int, int] | None = None,
    duration_range: tuple[float, float] | None = None,
    seed: int = 0,
    id_prefix: str = "sim",
    vary: bool = False,
    conditions=None,
    minor_speakers_range: tuple[int, int] | None = None,
) -> str:
    """Write `<id>.wav` (PCM 16), `<id>.rttm` and a NeMo `manifest.jsonl` (paths relative to it).

    Each conversation is `base_config` with its own seed, and, when the ranges are given, its own
    speaker count (inclusive range) and duration drawn from `seed`; with `vary`, its own overlap,
    gains, noise and file format too (`varied_conditions`); `conditions` is another such function of
    the generator (`far_field_conditions`); with `minor_speakers_range`, that many of its speakers
    (fewer than all) say one short thing each (`SimulationConfig.minor_speakers`)."""
    conditions = conditions or (varied_conditions if vary else None)
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    conditions_rng = np.random.default_rng([seed, 1])  # its own stream: `vary` leaves the rest as it was
    minor_rng = np.random.default_rng([seed, 2])  # and the listeners theirs
    rows = []
    for index in range(num_conversations):
        changes = {"seed": int(rng.integers(2**31))}
        if speakers_range is not None:
            changes["num_speakers"] = int(rng.integers(speakers_range[0], speakers_range[1] + 1))
        if duration_range is not None:
            changes["duration_sec"] = round(float(rng.uniform(*duration_range)), 2)
        if minor_speakers_range is not None:
            drawn = int(minor_rng.integers(minor_speakers_range[0], minor_speakers_range[1] + 1))
            changes["minor_speakers"] = min(drawn, changes.get("num_speakers", base_config.num_speakers) - 1)
        audio_format = "16k"
        if conditions is not None:
            varied, audio_format = conditions(conditions_rng)
            changes.update(varied)
        uniq_id = f"{id_prefix}-{index:04d}"
        conversation = simulate_conversation(dataclasses.replace(base_config, **changes), uniq_id)
        write_audio(os.path.join(out_dir, f"{uniq_id}.wav"), conversation.audio, audio_format)
        write_rttm(os.path.join(out_dir, f"{uniq_id}.rttm"), uniq_id, conversation.turns)
        rows.append(
            ManifestRow(
                audio_filepath=f"{uniq_id}.wav",
                uniq_id=uniq_id,
                duration=conversation.duration,
                num_speakers=len(conversation.speaker_gains_db),
                rttm_filepath=f"{uniq_id}.rttm",
            )
        )
    manifest_path = os.path.join(out_dir, "manifest.jsonl")
    write_manifest(manifest_path, rows)
    return manifest_path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.simulate", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="output folder (wav, rttm, manifest.jsonl)")
    parser.add_argument("--num", type=int, default=20, help="number of conversations")
    parser.add_argument("--min-speakers", type=int, default=2)
    parser.add_argument("--max-speakers", type=int, default=5)
    parser.add_argument("--min-duration", type=float, default=60.0, help="seconds")
    parser.add_argument("--max-duration", type=float, default=180.0, help="seconds")
    parser.add_argument("--overlap", type=float, default=0.1, help="overlapped fraction of speech time")
    parser.add_argument("--mean-pause", type=float, default=0.5, help="mean pause between turns, seconds")
    parser.add_argument("--snr-db", type=float, default=None, help="add noise at this SNR (default: clean)")
    parser.add_argument("--noise", choices=NOISE_COLORS, default="white")
    parser.add_argument(
        "--source", default=None, help="folder of LibriSpeech FLAC files (default: DATA/librispeech-train-clean-100)"
    )
    parser.add_argument(
        "--speakers",
        choices=["all", "dev", "test"],
        default="all",
        help="draw speakers from this half of the LibriSpeech speakers (see benchmarks.data)",
    )
    parser.add_argument(
        "--vary",
        action="store_true",
        help="vary overlap, gains, noise and format (8 kHz, 44.1 kHz stereo) per conversation",
    )
    parser.add_argument("--seed", type=int, default=0)
    add_data_argument(parser)
    args = parser.parse_args(argv)
    pool = None if args.speakers == "all" else librispeech_speakers(args.speakers, args.source)
    base_config = SimulationConfig(
        num_speakers=args.min_speakers,
        duration_sec=args.min_duration,
        mean_pause_sec=args.mean_pause,
        overlap_ratio=args.overlap,
        snr_db=args.snr_db,
        noise_color=args.noise,
        source_dir=args.source or librispeech_dir(),
        speaker_pool=pool,
    )
    manifest = write_corpus(
        args.out,
        args.num,
        base_config,
        speakers_range=(args.min_speakers, args.max_speakers),
        duration_range=(args.min_duration, args.max_duration),
        seed=args.seed,
        vary=args.vary,
    )
    print(manifest)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
