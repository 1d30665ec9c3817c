"""RTTM/UEM files and NeMo manifests: formats, round trips, UTF-8, ids and errors."""

import json

import pytest
from helpers import AMI

from pipeline.io.manifest import ManifestError, parse_line, read_manifest, rows_from_paths
from pipeline.io.rttm import Turn, parse_rttm, read_rttm, read_uem, rttm_lines, write_rttm


def test_rttm_round_trip_keeps_utf8_ids_and_speakers(tmp_path):
    turns = read_rttm(str(AMI / "trñ00.rttm"))["trñ00"]
    assert "MÉO069" in {t.speaker for t in read_rttm(str(AMI / "trn01.rttm"))["trn01"]}
    path = tmp_path / "out.rttm"
    write_rttm(str(path), "trñ00", turns)
    again = read_rttm(str(path))["trñ00"]
    assert [(round(t.start, 3), round(t.end, 3), t.speaker) for t in again] == [
        (round(t.start, 3), round(t.end, 3), t.speaker) for t in turns
    ]


def test_whitespace_in_ids_still_gives_ten_field_rttm_lines():
    (line,) = rttm_lines("my meeting\tpart 1", [Turn(1.0, 2.5, "speaker 0")])
    assert line == "SPEAKER my_meeting_part_1 1 1.000 1.500 <NA> <NA> speaker_0 <NA> <NA>"
    assert len(line.split()) == 10
    assert parse_rttm(line + "\n") == {"my_meeting_part_1": [Turn(1.0, 2.5, "speaker_0")]}


def test_uem_is_read():
    assert read_uem(str(AMI / "trn01.uem")) == {"trn01": [(0.0, 30.0)]}


def test_manifest_rows_resolve_relative_paths_and_make_nemo_ids():
    rows = read_manifest(str(AMI / "manifest.jsonl"))
    first = rows[0]
    assert first.uniq_id == "trñ00" and first.audio_filepath == str(AMI / "trñ00.wav")
    assert first.rttm_filepath == str(AMI / "trñ00.rttm") and first.num_speakers == 3


def test_uri_manifests_resolve_against_their_folder():
    row = parse_line(json.dumps({"audio_filepath": "a/b.flac"}), "s3://bucket/corpus/m.jsonl", 1)
    assert row.audio_filepath == "s3://bucket/corpus/a/b.flac" and row.uniq_id == "b"


@pytest.mark.parametrize(
    "line,reason",
    [
        ("{not json", "invalid JSON"),
        (json.dumps({"text": "-"}), "missing 'audio_filepath'"),
        (json.dumps({"audio_filepath": "a.wav", "offset": -1}), "offset"),
        (json.dumps({"audio_filepath": "a.wav", "num_speakers": 0}), "num_speakers"),
    ],
)
def test_bad_lines_name_the_manifest_line_and_reason(line, reason):
    with pytest.raises(ManifestError, match=reason) as error:
        parse_line(line, "corpus.jsonl", 7)
    assert str(error.value).startswith("corpus.jsonl:7:")


def test_same_base_name_in_two_folders_gets_distinct_stable_ids():
    rows = rows_from_paths(["/x/a.wav", "/y/a.wav", "/x/b.wav"])
    ids = [row.uniq_id for row in rows]
    assert len(set(ids)) == 3 and ids[2] == "b"
    assert ids[0].startswith("a-") and ids == [
        row.uniq_id for row in rows_from_paths(["/x/a.wav", "/y/a.wav", "/x/b.wav"])
    ]


@pytest.mark.parametrize("uniq_id", ["../../etc/passwd", "/abs/id", "..", ".", "a\\b"])
def test_ids_that_could_escape_the_output_folder_become_plain_names(uniq_id):
    row = parse_line(json.dumps({"audio_filepath": "a.wav", "uniq_id": uniq_id}), "m.jsonl", 1)
    assert not any(c in row.uniq_id for c in "/\\") and not row.uniq_id.startswith(".") and "~" in row.uniq_id


@pytest.mark.parametrize(
    "record,reason",
    [
        ({"audio_filepath": "/x/" + "n" * 300 + ".wav"}, "longer than 200 bytes"),
        ({"audio_filepath": "a\u0000b.wav"}, "NUL"),
    ],
)
def test_ids_that_no_file_system_accepts_are_rejected(record, reason):
    with pytest.raises(ManifestError, match=reason):
        parse_line(json.dumps(record), "m.jsonl", 1)
