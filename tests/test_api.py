"""NeMo's diarize() contract on the default model: inputs, outputs, configs and errors."""

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import AMI, FAR_FIELD_YAML, cpu_model
from torch.utils.data import DataLoader

from pipeline import (
    DiarizationMixin,
    DiarizeConfig,
    InternalDiarizeConfig,
    PostProcessingParams,
    load_postprocessing_from_yaml,
)
from pipeline.io.audio import decode_audio
from pipeline.io.dataset import DiarizationDataset
from pipeline.io.manifest import read_manifest
from pipeline.io.rttm import parse_segment
from pipeline.models.contract import RecordingBatch

TRN03 = str(AMI / "trn03.wav")


@pytest.fixture(scope="module")
def model():
    return cpu_model()


@pytest.fixture(scope="module")
def trn03_segments(model):
    return model.diarize(TRN03, num_workers=0)[0]


def assert_nemo_segments(segments, max_end):
    assert segments, "expected speech"
    turns = [parse_segment(s) for s in segments]
    for segment, turn in zip(segments, turns):
        begin, end, speaker = segment.split()
        assert len(begin.split(".")[1]) == 3 and len(end.split(".")[1]) == 3
        assert speaker.startswith("speaker_") and 0 <= turn.start < turn.end <= max_end + 1e-3
    assert [t.start for t in turns] == sorted(t.start for t in turns)
    first_seen = list(dict.fromkeys(t.speaker for t in turns))
    assert first_seen == [f"speaker_{k}" for k in range(len(first_seen))]


def test_single_path_gives_one_list_of_nemo_segment_strings(trn03_segments):
    assert_nemo_segments(trn03_segments, 60.0)


def test_list_of_paths_gives_one_result_per_file_in_order(model, trn03_segments):
    results = model.diarize([TRN03, str(AMI / "silence-1s.wav"), TRN03], batch_size=2, num_workers=0)
    assert len(results) == 3
    assert results[0] == trn03_segments == results[2]
    assert results[1] == []


def test_manifest_path_honours_offset_and_duration_and_shifts_times(model, tmp_path):
    manifest = tmp_path / "slice.jsonl"
    manifest.write_text(json.dumps({"audio_filepath": TRN03, "offset": 20.0, "duration": 25.0}) + "\n")
    (segments,) = model.diarize(str(manifest), num_workers=0)
    turns = [parse_segment(s) for s in segments]
    assert turns and min(t.start for t in turns) >= 20.0 and max(t.end for t in turns) <= 45.0 + 1e-3


def test_numpy_arrays_and_tensors_match_the_file(model):
    samples = decode_audio(TRN03)
    from_array, from_tensor = model.diarize([samples, torch.from_numpy(samples)], num_workers=0)
    from_file = model.diarize(TRN03, num_workers=0)[0]
    assert from_array == from_file == from_tensor


def test_dataloader_input(model, trn03_segments):
    rows = read_manifest(str(AMI / "manifest.jsonl"))
    trn03 = [row for row in rows if row.uniq_id == "trn03"]
    trn03[0].num_speakers = None
    loader = DataLoader(DiarizationDataset(trn03), batch_size=1, collate_fn=RecordingBatch.collate)
    assert model.diarize(loader) == [trn03_segments]


def test_tensor_outputs_are_per_frame_probabilities(model, trn03_segments):
    segments, probabilities = model.diarize(TRN03, include_tensor_outputs=True, num_workers=0)
    assert segments == [trn03_segments]
    (frames,) = probabilities
    num_speakers = len({s.split()[2] for s in trn03_segments})
    assert frames.shape[0] == 1 and frames.shape[1] == int(np.ceil(sf.info(TRN03).duration / model.frame_seconds))
    assert frames.shape[2] >= num_speakers
    assert float(frames.min()) >= 0.0 and float(frames.max()) <= 1.0


def test_known_speaker_count_from_manifest_is_used(model, tmp_path, trn03_segments):
    """One speaker where the estimate finds more: the manifest's count is the count."""
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"audio_filepath": TRN03, "num_speakers": 1}) + "\n")
    (segments,) = model.diarize(str(manifest), num_workers=0)
    assert len({s.split()[2] for s in trn03_segments}) > 1
    assert len({s.split()[2] for s in segments}) == 1


def test_max_num_speakers_bounds_the_estimate(model):
    (segments,) = model.diarize(TRN03, num_workers=0, max_num_speakers=1)
    assert {s.split()[2] for s in segments} == {"speaker_0"}


def test_postprocessing_yaml_is_loaded_and_changes_the_output(model, tmp_path, trn03_segments):
    assert load_postprocessing_from_yaml(str(FAR_FIELD_YAML)) == PostProcessingParams(
        onset=0.3, offset=0.15, pad_onset=0.1, pad_offset=0.1, min_duration_on=0.1, min_duration_off=0.3
    )
    strict = tmp_path / "strict.yaml"
    strict.write_text("parameters:\n  onset: 0.5\n  offset: 0.5\n  min_duration_on: 3.0\n")
    (segments,) = model.diarize(TRN03, postprocessing_yaml=str(strict), num_workers=0)
    assert all(parse_segment(s).duration >= 3.0 for s in segments)
    assert len(segments) < len(trn03_segments)


def test_bad_postprocessing_yaml_names_the_unknown_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("parameters:\n  onsett: 0.5\n")
    with pytest.raises(ValueError, match="onsett"):
        load_postprocessing_from_yaml(str(bad))


def test_override_config_without_internal_raises_nemo_value_error(model):
    class NoInternal:
        batch_size = 1

    with pytest.raises(ValueError, match="_internal"):
        model.diarize(TRN03, override_config=NoInternal())
    with pytest.raises(ValueError, match="InternalDiarizeConfig"):
        model.diarize(TRN03, override_config=DiarizeConfig(_internal={"device": "cpu"}))


def test_override_config_is_used(model, trn03_segments):
    config = DiarizeConfig(num_workers=0, verbose=False, _internal=InternalDiarizeConfig())
    assert model.diarize(TRN03, override_config=config) == [trn03_segments]


def test_model_mode_is_restored_after_diarize(model):
    model.train()
    try:
        model.diarize(str(AMI / "silence-1s.wav"), num_workers=0)
        assert model.training
    finally:
        model.eval()


def test_generator_yields_per_batch(model):
    batches = list(
        model.diarize_generator([TRN03, TRN03, TRN03], DiarizeConfig(batch_size=2, num_workers=0, verbose=False))
    )
    assert [len(batch) for batch in batches] == [2, 1]


def test_empty_input_is_rejected(model):
    with pytest.raises(ValueError, match="empty"):
        model.diarize([])


def test_missing_file_error_names_the_file(model, tmp_path):
    missing = tmp_path / "nowhere" / "gone.wav"
    with pytest.raises(FileNotFoundError, match="gone.wav"):
        model.diarize(str(missing), num_workers=0)


def test_silence_gives_no_segments_and_no_error(model):
    assert model.diarize(str(AMI / "silence-1s.wav"), num_workers=0) == [[]]


def test_utf8_file_name(model):
    (segments,) = model.diarize(str(AMI / "trñ00.wav"), num_workers=0)
    assert_nemo_segments(segments, 60.0)


@pytest.mark.parametrize("sample_rate,channels", [(44_100, 2), (8_000, 1)])
def test_other_rates_and_channel_counts_give_similar_results(model, tmp_path, trn03_segments, sample_rate, channels):
    import torchaudio

    samples = torchaudio.functional.resample(torch.from_numpy(decode_audio(TRN03)), 16_000, sample_rate).numpy()
    path = tmp_path / f"trn03_{sample_rate}.flac"
    sf.write(path, np.stack([samples] * channels, axis=1), sample_rate)
    (segments,) = model.diarize(str(path), num_workers=0)
    assert_nemo_segments(segments, 60.0)
    speech = lambda segs: sum(parse_segment(s).duration for s in segs)  # noqa: E731
    assert speech(segments) == pytest.approx(speech(trn03_segments), rel=0.15)


def test_duplicate_base_names_do_not_overwrite_each_other(model, tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(TRN03, tmp_path / folder / "same.wav")
    results = model.diarize([str(tmp_path / "a" / "same.wav"), str(tmp_path / "b" / "same.wav")], num_workers=0)
    assert len(results) == 2 and results[0] == results[1] and results[0]


def test_legacy_interface_returns_one_list_per_file(trn03_segments):
    class LegacyModel(type(cpu_model()), DiarizationMixin):
        pass

    legacy = LegacyModel()
    assert DiarizationMixin.diarize(legacy, [TRN03], batch_size=1) == [trn03_segments]


def test_dataloader_workers(model, trn03_segments):
    assert model.diarize([TRN03], num_workers=1) == [trn03_segments]


def test_a_missing_audio_file_is_one_error_naming_it(model, tmp_path):
    missing = str(tmp_path / "missing.wav")
    with pytest.raises(FileNotFoundError) as raised:
        model.diarize([TRN03, missing], num_workers=1)
    assert str(raised.value) == f"audio file not found: {missing}"


def test_a_folder_given_as_audio_is_one_error_naming_the_manifest_command(model, tmp_path):
    with pytest.raises(IsADirectoryError) as raised:
        model.diarize([TRN03, str(tmp_path)], num_workers=0)
    assert str(raised.value) == (
        f"{tmp_path} is a folder, not an audio file: pass its files, or a manifest of them "
        f"(python -m pipeline manifest '{tmp_path}' --output manifest.jsonl)"
    )


def test_post_processing_presets_are_named_from_any_folder(model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_postprocessing_from_yaml("nemo") == PostProcessingParams()  # NeMo's defaults
    assert load_postprocessing_from_yaml("far_field") == load_postprocessing_from_yaml(str(FAR_FIELD_YAML))
    assert model.diarize(TRN03, postprocessing_yaml="far_field")[0]
    with pytest.raises(
        ValueError, match="no post-processing preset 'nemoo': the presets are \\['far_field', 'nemo'\\]"
    ):
        load_postprocessing_from_yaml("nemoo")


def test_pyannote_speaker_count_names_and_a_progress_hook(model):
    calls = []
    (segments,) = model.diarize(
        TRN03, min_speakers=2, max_speakers=2, hook=lambda step, artefact, **progress: calls.append((step, progress))
    )
    assert len({segment.split()[2] for segment in segments}) == 2
    assert calls == [("diarize", {"total": 1, "completed": 1})]
    with pytest.raises(ValueError, match="give min_speakers or min_num_speakers, not both"):
        model.diarize(TRN03, min_speakers=2, min_num_speakers=2)


def test_exclusive_turns_give_overlaps_to_the_most_active_speaker():
    from pipeline.io.rttm import Turn
    from pipeline.postprocessing import exclusive_turns

    turns = [Turn(0.0, 10.0, "speaker_0"), Turn(5.0, 15.0, "speaker_1"), Turn(20.0, 21.0, "speaker_0")]
    activity = np.zeros((25, 2))
    activity[5:8] = [0.9, 0.6]  # speaker_0 louder until 8 s, then speaker_1
    activity[8:10] = [0.6, 0.9]
    expected = [Turn(0.0, 8.0, "speaker_0"), Turn(8.0, 15.0, "speaker_1"), Turn(20.0, 21.0, "speaker_0")]
    assert exclusive_turns(turns, activity, frame_seconds=1.0) == expected
    # without activity the speaker who had the floor keeps it
    assert exclusive_turns(turns)[:2] == [Turn(0.0, 10.0, "speaker_0"), Turn(10.0, 15.0, "speaker_1")]


def test_exclusive_diarization_has_one_speaker_at_a_time_over_the_same_speech(model):
    from pipeline.export.formats import to_annotation

    (regular,) = model.diarize(TRN03)
    (exclusive,) = model.diarize(TRN03, exclusive=True)
    turns = sorted((parse_segment(s) for s in exclusive), key=lambda t: t.start)
    assert all(a.end <= b.start + 1e-6 for a, b in zip(turns, turns[1:])), "never two speakers at once"
    speech = [(s.start, s.end) for s in to_annotation(regular).get_timeline().support()]
    covered = [(s.start, s.end) for s in to_annotation(exclusive).get_timeline().support()]
    assert len(speech) == len(covered) and all(
        abs(a - c) <= 0.002 and abs(b - d) <= 0.002 for (a, b), (c, d) in zip(speech, covered)
    )
    assert {t.speaker for t in turns} <= {parse_segment(s).speaker for s in regular}
