"""Hostile audio and hostile manifest rows through a whole corpus run: each is labelled or becomes
one error row with its reason, nothing is written outside --output, and no temporary or partial
file is left behind."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from conftest import AMI
from helpers import encode_with_ffmpeg

from pipeline.io.audio import decode_audio

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hostile_run(local_ray, tmp_path_factory):
    import pipeline

    root = tmp_path_factory.mktemp("hostile")
    corpus, output = root / "corpus", root / "output"
    corpus.mkdir()
    speech = decode_audio(str(AMI / "trn03.wav"))
    with_nan = speech.copy()
    with_nan[::997] = np.nan
    sf.write(corpus / "nan.wav", with_nan, 16_000, subtype="FLOAT")
    sf.write(corpus / "six_channels.wav", np.stack([speech] * 6, axis=1)[: 16_000 * 10], 16_000)
    (corpus / "transcript.mp3").write_text("not an mp3\n" * 100)
    encode_with_ffmpeg(speech[: 16_000 * 10], corpus / "phone.m4a", "mp4", "aac", 44_100, channels=2)  # FFmpeg's
    lines = [
        {"audio_filepath": "nan.wav"},
        {"audio_filepath": "six_channels.wav"},
        {"audio_filepath": "transcript.mp3"},
        {"audio_filepath": "nan.wav", "uniq_id": "../../escaped"},
        {"audio_filepath": "nan.wav", "uniq_id": "/tmp/absolute"},
        {"audio_filepath": "/" + "x" * 300 + ".wav"},
        {"audio_filepath": "phone.m4a"},
    ]
    manifest = corpus / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    summary = pipeline.run_corpus([str(manifest)], str(output), batch_size=2)
    rows = {r["line_number"]: r for r in pq.read_table(output / "recordings").to_pylist()}
    return root, output, summary, rows


def test_every_row_is_labelled_or_one_error_row(hostile_run):
    _, _, summary, rows = hostile_run
    assert sorted(rows) == [1, 2, 3, 4, 5, 6, 7]
    assert [rows[n]["status"] for n in (1, 2, 7)] == ["ok", "ok", "ok"]
    assert all(rows[n]["num_speakers"] >= 1 for n in (1, 2, 7))
    assert rows[7]["duration"] == pytest.approx(10.0, abs=0.05)  # M4A/AAC, decoded by FFmpeg
    assert "cannot decode" in rows[3]["error"] and "transcript.mp3" in rows[3]["error"]
    # ids that name a path become plain names in the id alphabet (pipeline.io.ids): labelled, inside --output
    assert [rows[n]["status"] for n in (4, 5)] == ["ok", "ok"]
    assert all("/" not in rows[n]["uniq_id"] and not rows[n]["uniq_id"].startswith(".") for n in (4, 5))
    assert "longer than 200 bytes" in rows[6]["error"]
    assert (summary["ok"], summary["errors"]) == (5, 2)


def test_nothing_is_written_outside_the_output_folder(hostile_run):
    root, output, _, _ = hostile_run
    assert sorted(p.name for p in root.iterdir()) == ["corpus", "output"]
    _, _, _, rows = hostile_run
    ok_ids = [rows[n]["uniq_id"] for n in (1, 2, 4, 5, 7)]
    assert sorted(p.name for p in (output / "rttm").iterdir()) == sorted(f"{i}.rttm" for i in ok_ids)


def test_no_temporary_or_partial_files_are_left(hostile_run):
    _, output, _, _ = hostile_run
    leftovers = [p for p in output.rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp")]
    assert leftovers == []
    for part in (output / "segments").iterdir():
        pq.read_table(part)  # every part is a whole Parquet file
