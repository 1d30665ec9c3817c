"""A corpus of bad inputs: every one becomes one error row with a readable reason, and every good
file is still labelled."""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest
from conftest import AMI, FAST_MODEL


@pytest.fixture(scope="module")
def bad_corpus(local_ray, tmp_path_factory):
    import pipeline

    corpus = tmp_path_factory.mktemp("bad")
    for folder in ("a", "b"):  # one base name in two folders: two recordings, two ids
        (corpus / folder).mkdir()
        shutil.copy(AMI / "trn02.wav", corpus / folder / "trn02.wav")
    shutil.copy(AMI / "trñ00.wav", corpus / "trñ00.wav")
    shutil.copy(AMI / "silence-1s.wav", corpus / "silence-1s.wav")
    (corpus / "corrupt.wav").write_bytes(b"RIFF this is not audio at all" * 10)
    (corpus / "empty.wav").write_bytes(b"")
    lines = [
        json.dumps({"audio_filepath": "trñ00.wav"}, ensure_ascii=False),
        json.dumps({"audio_filepath": "a/trn02.wav"}),
        json.dumps({"audio_filepath": "b/trn02.wav"}),
        json.dumps({"audio_filepath": "silence-1s.wav"}),
        json.dumps({"audio_filepath": "corrupt.wav"}),
        json.dumps({"audio_filepath": "empty.wav"}),
        json.dumps({"audio_filepath": "nöpe.wav"}, ensure_ascii=False),
        '{"audio_filepath": "broken.wav", ',
        json.dumps({"duration": 3.0, "text": "no audio here"}),
    ]
    manifest = corpus / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    output = tmp_path_factory.mktemp("bad-output")
    summary = pipeline.run_corpus([str(manifest)], str(output), model=FAST_MODEL, batch_size=3)
    rows = {r["line_number"]: r for r in pq.read_table(output / "recordings").to_pylist()}
    return manifest, output, summary, rows


@pytest.mark.slow
def test_input_rows_equal_ok_plus_error_rows(bad_corpus):
    _, _, summary, rows = bad_corpus
    assert sorted(rows) == list(range(1, 10))
    assert (summary["input_rows"], summary["ok"], summary["errors"]) == (9, 4, 5)


@pytest.mark.slow
@pytest.mark.parametrize(
    "line, reason",
    [
        (5, "cannot decode"),
        (6, "the file is empty (0 bytes)"),
        (7, "audio file not found"),
        (8, "invalid JSON"),
        (9, "missing 'audio_filepath'"),
    ],
)
def test_each_bad_input_is_one_error_row_with_a_readable_reason(bad_corpus, line, reason):
    manifest, _, _, rows = bad_corpus
    row = rows[line]
    assert row["status"] == "error" and reason in row["error"]
    assert " object at 0x" not in row["error"], "the decoder's words, not a Python object's repr"
    if line >= 8:  # manifest errors name the manifest and the line
        assert row["error"].startswith(f"{manifest}:{line}:") and row["uniq_id"] is None
    else:  # audio errors name the file
        assert row["audio_filepath"] in row["error"]
    assert "nöpe.wav" in rows[7]["error"]


@pytest.mark.slow
def test_good_files_are_labelled_with_unique_ids(bad_corpus):
    _, output, _, rows = bad_corpus
    ok = [rows[line] for line in (1, 2, 3, 4)]
    assert all(r["status"] == "ok" for r in ok)
    ids = [r["uniq_id"] for r in ok]
    assert ids[0] == "trñ00" and ids[3] == "silence-1s"
    assert ids[1] != ids[2] and all(i.startswith("trn02-") and len(i) == len("trn02-") + 8 for i in ids[1:3])
    assert rows[4]["num_speakers"] == 0 and rows[4]["speech_seconds"] == 0.0
    assert all((output / "rttm" / f"{i}.rttm").exists() for i in ids)
    assert rows[1]["num_speakers"] >= 1


@pytest.mark.slow
def test_fail_on_error_exits_non_zero_only_when_asked(bad_corpus):
    from pipeline.cli import main

    manifest, output, _, _ = bad_corpus
    arguments = ["diarize", "--manifest", str(manifest), "--output", str(output), "--resume", "--model", FAST_MODEL]
    assert main(arguments) == 0
    assert main(arguments + ["--fail-on-error"]) == 1
