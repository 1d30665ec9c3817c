import dataclasses
import json

import numpy as np
import pytest
import soundfile as sf

from benchmarks.data import librispeech_dir
from benchmarks.simulate import (
    SimulationConfig,
    main,
    simulate_conversation,
    speaker_files,
    speech_overlap_ratio,
    speech_regions,
    write_corpus,
)
from pipeline.export.report import speech_per_speaker
from pipeline.io.audio import SAMPLE_RATE
from pipeline.io.manifest import read_manifest
from pipeline.io.rttm import Turn, read_rttm

CONFIG = SimulationConfig(num_speakers=3, duration_sec=60.0, overlap_ratio=0.1, seed=7)


@pytest.fixture(scope="module")
def conversation():
    return simulate_conversation(CONFIG)


def speech_mask(turns, num_samples):
    mask = np.zeros(num_samples, dtype=bool)
    for turn in turns:
        mask[round(turn.start * SAMPLE_RATE) : round(turn.end * SAMPLE_RATE)] = True
    return mask


def level_db(samples):
    return 10 * np.log10(np.mean(samples.astype(np.float64) ** 2) + 1e-20)


def test_same_seed_gives_the_same_conversation(conversation):
    again = simulate_conversation(CONFIG)
    assert again.turns == conversation.turns
    np.testing.assert_array_equal(again.audio, conversation.audio)


def test_another_seed_gives_another_conversation(conversation):
    other = simulate_conversation(dataclasses.replace(CONFIG, seed=8))
    assert other.turns != conversation.turns


def test_audio_is_16k_mono_float32_of_the_asked_duration(conversation):
    assert conversation.audio.dtype == np.float32
    assert conversation.audio.shape == (round(CONFIG.duration_sec * SAMPLE_RATE),)
    assert np.abs(conversation.audio).max() <= 0.99


def test_turns_lie_inside_the_audio(conversation):
    assert all(0 <= t.start < t.end <= conversation.duration for t in conversation.turns)


def test_clean_audio_is_silent_outside_the_reference(conversation):
    outside = conversation.audio[~speech_mask(conversation.turns, len(conversation.audio))]
    assert np.abs(outside).max() == 0.0


def test_every_reference_turn_holds_speech(conversation):
    for turn in conversation.turns:
        samples = conversation.audio[round(turn.start * SAMPLE_RATE) : round(turn.end * SAMPLE_RATE)]
        assert level_db(samples) > -45, turn


def test_speech_regions_are_exact_to_a_frame():
    """0.5 s silence, 1 s tone, 0.1 s pause (bridged), 1 s tone, 0.5 s pause (kept), 0.5 s tone."""
    rng = np.random.default_rng(0)
    pieces = [(0.5, 0), (1.0, 1), (0.1, 0), (1.0, 1), (0.5, 0), (0.5, 1), (0.5, 0)]
    signal = np.concatenate(
        [
            np.sin(2 * np.pi * 220 * np.arange(int(sec * SAMPLE_RATE)) / SAMPLE_RATE) * 0.3
            if tone
            else np.zeros(int(sec * SAMPLE_RATE))
            for sec, tone in pieces
        ]
    ) + 1e-4 * rng.standard_normal(int(4.1 * SAMPLE_RATE))
    regions = speech_regions(signal, min_pause_frames=20, min_speech_frames=10)
    np.testing.assert_allclose(regions, [[50, 260], [310, 360]], atol=1)


@pytest.mark.parametrize("asked", [0.0, 0.1, 0.25])
def test_overlap_ratio_is_close_to_the_asked_one(asked):
    ratios = [
        simulate_conversation(dataclasses.replace(CONFIG, overlap_ratio=asked, seed=seed)).overlap_ratio
        for seed in range(3)
    ]
    assert np.allclose(ratios, asked, atol=0.03), ratios


def test_overlap_ratio_counts_overlapped_over_any_speech():
    turns = [Turn(0.0, 10.0, "A"), Turn(8.0, 12.0, "B"), Turn(14.0, 16.0, "A")]
    assert speech_overlap_ratio(turns) == pytest.approx(2.0 / 14.0)


@pytest.mark.parametrize("num_speakers", [1, 2, 5])
def test_every_speaker_speaks_under_their_librispeech_id(num_speakers):
    conversation = simulate_conversation(dataclasses.replace(CONFIG, num_speakers=num_speakers))
    speakers = {t.speaker for t in conversation.turns}
    assert len(speakers) == num_speakers
    assert speakers == set(conversation.speaker_gains_db) <= set(speaker_files(CONFIG.source_dir))


def test_listeners_say_one_short_thing_and_the_others_talk():
    conversation = simulate_conversation(dataclasses.replace(CONFIG, num_speakers=4, minor_speakers=2))
    seconds = speech_per_speaker(conversation.turns)
    quiet, talkers = sorted(seconds.values())[:2], sorted(seconds.values())[2:]
    assert len(seconds) == 4 and all(0 < s <= CONFIG.minor_turn_sec_range[1] for s in quiet), seconds
    assert sum(talkers) > 0.7 * sum(seconds.values())


def test_speaker_gains_set_their_relative_levels():
    """Same seed, so the same turns; only the gains change, the ratio of levels per speaker follows."""
    flat = simulate_conversation(dataclasses.replace(CONFIG, gain_db_range=(0.0, 0.0)))
    varied = simulate_conversation(dataclasses.replace(CONFIG, gain_db_range=(-12.0, 0.0)))
    assert flat.turns == varied.turns
    assert all(-12.0 <= gain <= 0.0 for gain in varied.speaker_gains_db.values())
    level_changes = []
    for speaker, gain_db in varied.speaker_gains_db.items():
        this_speaker = speech_mask([t for t in flat.turns if t.speaker == speaker], len(flat.audio))
        others = speech_mask([t for t in flat.turns if t.speaker != speaker], len(flat.audio))
        only_this_speaker = this_speaker & ~others
        change_db = level_db(varied.audio[only_this_speaker]) - level_db(flat.audio[only_this_speaker])
        level_changes.append(change_db - gain_db)
    assert np.ptp(level_changes) < 0.01  # equal up to one scale for the whole mix (peak limiting)


@pytest.mark.parametrize("noise_color", ["white", "pink"])
def test_noise_is_added_at_the_asked_snr(noise_color):
    quiet = dataclasses.replace(CONFIG, gain_db_range=(-10.0, -10.0), noise_color=noise_color)
    clean = simulate_conversation(quiet)
    noisy = simulate_conversation(dataclasses.replace(quiet, snr_db=15.0))
    assert noisy.turns == clean.turns
    in_speech = speech_mask(clean.turns, len(clean.audio))
    snr_db = level_db(clean.audio[in_speech]) - level_db(noisy.audio - clean.audio)
    assert snr_db == pytest.approx(15.0, abs=0.1)


def test_far_field_keeps_the_dry_labels_and_level_and_adds_a_reverberant_tail_and_babble():
    dry = simulate_conversation(CONFIG)
    wet = simulate_conversation(dataclasses.replace(CONFIG, reverb_rt60=0.6))
    babble = simulate_conversation(dataclasses.replace(CONFIG, babble_snr_db=20.0))
    assert wet.turns == dry.turns == babble.turns  # babble talkers are background, never labelled
    in_speech = speech_mask(dry.turns, len(dry.audio))
    assert level_db(wet.audio[in_speech]) == pytest.approx(level_db(dry.audio[in_speech]), abs=1.0)
    # the dry mix is silent outside the reference; the room carries each turn on for a while
    assert not dry.audio[~in_speech].any()
    assert level_db(wet.audio[~in_speech]) > level_db(wet.audio[in_speech]) - 40
    snr_db = level_db(dry.audio[in_speech]) - level_db(babble.audio - dry.audio)
    assert snr_db == pytest.approx(20.0, abs=0.1)


def test_cli_writes_a_manifest_with_readable_audio_and_rttm(tmp_path):
    main(
        [
            "--out",
            str(tmp_path),
            "--num",
            "3",
            "--min-speakers",
            "2",
            "--max-speakers",
            "4",
            "--min-duration",
            "20",
            "--max-duration",
            "40",
            "--overlap",
            "0.1",
            "--seed",
            "0",
            "--snr-db",
            "30",
        ]
    )
    rows = read_manifest(str(tmp_path / "manifest.jsonl"))
    assert [row.uniq_id for row in rows] == ["sim-0000", "sim-0001", "sim-0002"]
    for row in rows:
        info = sf.info(row.audio_filepath)
        assert (info.samplerate, info.channels, info.subtype) == (SAMPLE_RATE, 1, "PCM_16")
        assert row.duration == pytest.approx(info.duration)
        assert 20 <= row.duration <= 40 and row.offset == 0.0 and row.uem_filepath is None
        turns = read_rttm(row.rttm_filepath)[row.uniq_id]
        assert len({t.speaker for t in turns}) == row.num_speakers
        assert 2 <= row.num_speakers <= 4
        assert max(t.end for t in turns) <= row.duration


def test_dev_and_test_splits_are_disjoint_and_cover_the_speakers():
    from benchmarks.simulate import speaker_files
    from benchmarks.splits import AMI_SPLITS, librispeech_speakers

    dev, test = librispeech_speakers("dev"), librispeech_speakers("test")
    assert not set(dev) & set(test)
    assert set(dev) | set(test) == set(speaker_files(librispeech_dir()))
    assert abs(len(dev) - len(test)) <= 1
    assert not set(AMI_SPLITS["dev"]) & set(AMI_SPLITS["test"])


def test_a_split_corpus_uses_only_its_speakers_and_varies_formats(tmp_path):
    import soundfile as sf

    from benchmarks.splits import librispeech_speakers

    pool = librispeech_speakers("test")
    config = SimulationConfig(duration_sec=30.0, speaker_pool=pool)
    manifest = write_corpus(
        str(tmp_path), 12, config, speakers_range=(2, 3), duration_range=(20, 30), seed=5, vary=True
    )
    rows = [json.loads(line) for line in open(manifest, encoding="utf-8")]
    formats = {
        (sf.info(tmp_path / r["audio_filepath"]).samplerate, sf.info(tmp_path / r["audio_filepath"]).channels)
        for r in rows
    }
    assert formats - {(16000, 1)}, "no 8 kHz or 44.1 kHz stereo file in 12 varied conversations"
    speakers = {line.split()[7] for r in rows for line in open(tmp_path / r["rttm_filepath"], encoding="utf-8")}
    assert speakers <= set(pool)
    for row in rows:  # every format decodes back to the labelled duration
        assert abs(sf.info(tmp_path / row["audio_filepath"]).duration - row["duration"]) < 0.01


def test_more_dev_corpora_are_new_conversations_of_the_dev_split_only(tmp_path):
    from benchmarks.splits import MORE_DEV_SPLITS, SHORT_SIMULATED_SPLITS, SIMULATED_SPLITS, split_manifests

    seeds = [spec.seed for spec in MORE_DEV_SPLITS.values()]
    assert len(set(seeds)) == len(seeds)
    assert not set(seeds) & {
        spec.seed for table in (SIMULATED_SPLITS, SHORT_SIMULATED_SPLITS) for spec in table.values()
    }
    with pytest.raises(ValueError, match="dev split only"):
        split_manifests("test", str(tmp_path), more=True)
    assert not list(tmp_path.iterdir())  # refused before writing anything
