"""The id alphabet (`pipeline.io.ids`), stable ids when a corpus grows, and bad manifest lines: unit
level, no Ray. The same cases through whole runs (local and S3) are in test_corpus_scale.py and
test_corpus_s3.py."""

from __future__ import annotations

import gzip
import io
import json
import unicodedata

import pyarrow as pa
import pytest

from pipeline.corpus.inputs import manifest_items
from pipeline.io.ids import MAX_ID_BYTES, assign_group_ids, candidate_id, recording_hash, row_keys
from pipeline.io.manifest import ManifestError, parse_line, rows_from_paths
from pipeline.io.rttm import Turn, rttm_lines

CAFE_NFC = unicodedata.normalize("NFC", "café")
CAFE_NFD = unicodedata.normalize("NFD", "café")

# Pairs of ids that tools or filesystems could merge; each must give two distinct ids.
CONFUSABLE_PAIRS = [
    ("rec?versionId=1", "rec?versionId=2"),  # s3fs reads `?versionId=` as a version query
    ("a b", "a_b"),  # RTTM fields are whitespace-separated
    ("tab\tid", "tab_id"),
    ("new\nline", "new_line"),
    ("\u202eevil", "_evil"),  # a bidi override must not reach a file name
    ("x#1", "x%231"),
    ("*[glob]", "_glob_"),
]
SAFE_IDS = ["trñ00", "MÉO069", "a-b_c.d+e=f@g", "會議_01", "ملف"]


@pytest.mark.parametrize("text", SAFE_IDS)
def test_letters_digits_and_safe_punctuation_are_kept_as_they_are(text):
    assert candidate_id(text) == text


@pytest.mark.parametrize("first, second", CONFUSABLE_PAIRS)
def test_confusable_ids_stay_distinct_and_literal(first, second):
    one, two = candidate_id(first), candidate_id(second)
    assert one != two
    for made in (one, two):
        assert made.isprintable() and not any(c in made for c in " \t\n\u202e?#%*[]/\\:")
        (line,) = rttm_lines(made, [Turn(0.0, 1.0, "speaker_0")])
        assert line.split()[1] == made  # the id is one RTTM field, unchanged


def test_nfc_and_nfd_spellings_are_one_id():
    assert CAFE_NFC != CAFE_NFD and candidate_id(CAFE_NFC) == candidate_id(CAFE_NFD) == CAFE_NFC


def test_a_leading_dot_cannot_hide_a_file_or_climb_a_folder():
    for text in (".hidden", "..", "../../etc/passwd"):
        made = candidate_id(text)
        assert not made.startswith(".") and "/" not in made


def test_the_longest_disambiguated_id_fits_a_file_name():
    candidate = candidate_id("é" * (MAX_ID_BYTES // 2))
    longest = assign_group_ids(candidate, row_keys(["f" * 40] * 10_000_000)[-1:] + ["0" * 40], {})[0]
    assert len(f"{longest}.rttm".encode()) < 255
    with pytest.raises(ValueError, match=f"longer than {MAX_ID_BYTES} bytes"):
        candidate_id("n" * (MAX_ID_BYTES + 1))


def test_a_recorded_id_never_changes_when_the_corpus_grows():
    x, y = recording_hash("/x/a.wav", 0.0, None), recording_hash("/y/a.wav", 0.0, None)
    (first,) = assign_group_ids("a", row_keys([x]), {})
    assert first == "a"
    # /y/a.wav joins: /x/a.wav is done (None: not labelled again), the newcomer is disambiguated
    assert assign_group_ids("a", row_keys([x, y]), {x: "a"}) == [None, f"a-{y[:8]}"]
    # without the record (a fresh run over the grown corpus) both are disambiguated
    assert assign_group_ids("a", row_keys([x, y]), {}) == [f"a-{x[:8]}", f"a-{y[:8]}"]


def test_repeats_of_one_row_get_ranks_in_input_order():
    digest = recording_hash("/x/a.wav", 1.0, 2.0)
    ids = assign_group_ids("a", row_keys([digest] * 3), {})
    assert ids == [f"a-{digest[:8]}", f"a-{digest[:8]}-2", f"a-{digest[:8]}-3"]


def test_in_process_ids_follow_the_same_rules():
    ids = [row.uniq_id for row in rows_from_paths(["/x/a.wav", "/y/a.wav", "/x/b.wav", "/x/c d.wav"])]
    assert ids[0].startswith("a-") and ids[1].startswith("a-") and ids[0] != ids[1] and ids[2] == "b"
    assert ids[3] == candidate_id("c d")


@pytest.mark.parametrize(
    "fields, reason",
    [
        ({"num_speakers": 1e400}, "num_speakers: must be a finite number"),
        ({"num_speakers": 1e30}, "num_speakers: must be a whole number from 1 to 1000"),
        ({"num_speakers": 2.5}, "num_speakers: must be a whole number"),
        ({"num_speakers": True}, "num_speakers: expected a number"),
        ({"offset": "five"}, "offset: could not convert 'five'"),
        ({"offset": -1}, "offset: must be between 0 and"),
        ({"duration": 1e300}, "duration: must be between 0 and"),
        ({"duration": [1]}, "duration: expected a number"),
        ({"duration": 0}, "duration: must be above 0 seconds (0 is a slice with no audio"),
        ({"uniq_id": {"a": 1}}, "uniq_id: expected a string"),
    ],
)
def test_a_bad_field_is_an_error_naming_the_field(fields, reason):
    line = json.dumps({"audio_filepath": "a.wav", **fields})
    with pytest.raises(ManifestError) as error:
        parse_line(line, "m.jsonl", 3)
    assert str(error.value).startswith("m.jsonl:3: ") and reason in str(error.value)


def items(data: bytes) -> list[dict]:
    return list(manifest_items(io.BytesIO(data), "m.jsonl"))


def test_a_utf8_byte_order_mark_keeps_the_first_row():
    rows = items(b"\xef\xbb\xbf" + b'{"audio_filepath": "a.wav"}\n{"audio_filepath": "b.wav"}\n')
    assert [(r["line_number"], r["status"], r["candidate"]) for r in rows] == [(1, "ok", "a"), (2, "ok", "b")]


@pytest.mark.parametrize(
    "encoding, named", [("utf-16", "UTF-16-LE"), ("utf-16-be", "UTF-16-BE"), ("utf-32", "UTF-32-LE")]
)
def test_other_encodings_are_one_error_row_naming_the_encoding(encoding, named):
    (row,) = items('{"audio_filepath": "a.wav"}\n{"audio_filepath": "b.wav"}\n'.encode(encoding))
    assert row["status"] == "error" and named in row["error"] and "save it as UTF-8" in row["error"]


def test_latin1_lines_are_error_rows_that_say_utf8():
    rows = items('{"audio_filepath": "caf\xe9.wav"}\n{"audio_filepath": "b.wav"}\n'.encode("latin-1"))
    assert rows[0]["status"] == "error" and "not valid UTF-8" in rows[0]["error"] and rows[1]["status"] == "ok"


def test_compressed_content_under_a_plain_name_is_named():
    (row,) = items(gzip.compress(b'{"audio_filepath": "a.wav"}\n'))
    assert "compressed (.gz)" in row["error"]
    zstd = pa.compress(b'{"audio_filepath": "a.wav"}\n', codec="zstd", asbytes=True)
    (row,) = items(zstd)
    assert "compressed (.zst)" in row["error"]
