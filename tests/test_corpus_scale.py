"""Corpus runs over the input side at scale: stable ids when the corpus grows, the id cases and bad
lines of issue 9 through whole runs, compressed and mis-encoded manifests, the dry run, and a large
all-error manifest committed as it goes."""

from __future__ import annotations

import gzip
import json
import threading
import unicodedata
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import AMI, FAST_MODEL, write_jsonl

from pipeline.errors import UsageError
from pipeline.io.rttm import read_rttm

pytestmark = pytest.mark.slow

SPEECH = str(AMI / "trn03.wav")
SILENCE = str(AMI / "silence-1s.wav")
ID_CASES = [
    "rec?versionId=1",
    "rec?versionId=2",
    "a b",
    "a_b",
    unicodedata.normalize("NFC", "café"),
    unicodedata.normalize("NFD", "café"),
    "tab\tid",
    "new\nline",
    "\u202eevil",
    "../up",
]


def recordings(output) -> dict[int, dict]:
    return {(Path(r["manifest"]).name, r["line_number"]): r for r in pq.read_table(output / "recordings").to_pylist()}


def run(manifests, output, **options):
    import pipeline

    return pipeline.run_corpus([str(m) for m in manifests], str(output), model=FAST_MODEL, batch_size=4, **options)


def test_a_grown_corpus_keeps_every_recorded_id_and_labels_only_the_new_row(local_ray, tmp_path, monkeypatch):
    # The resume's id pass takes the path of corpora of 100,000 rows and more: the inputs and the
    # records coalesced into few blocks before the shuffle (`inputs.assign_ids`); the ids must not move.
    monkeypatch.setattr("pipeline.corpus.inputs.COALESCE_FROM_ROWS", 1)
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "a.wav").symlink_to(SPEECH)
    (tmp_path / "x" / "b.wav").symlink_to(SPEECH)
    rows = [
        {"audio_filepath": "x/a.wav", "duration": 4.0},
        {"audio_filepath": "x/b.wav", "offset": 4.0, "duration": 4.0},
    ]
    manifest = write_jsonl(tmp_path / "manifest.jsonl", rows)
    output = tmp_path / "output"
    run([manifest], output)
    first = recordings(output)
    assert sorted(r["uniq_id"] for r in first.values()) == ["a", "b"]
    rttm_a = (output / "rttm" / "a.rttm").read_bytes()

    write_jsonl(manifest, rows + [{"audio_filepath": "y/a.wav", "duration": 4.0}])
    summary = run([manifest], output, resume=True)
    grown = recordings(output)
    assert (summary["processed_this_run"], summary["skipped_by_resume"], summary["recorded_rows"]) == (1, 2, 3)
    assert {k: (r["uniq_id"], r["row_key"]) for k, r in grown.items() if k in first} == {
        k: (r["uniq_id"], r["row_key"]) for k, r in first.items()
    }
    newcomer = grown[("manifest.jsonl", 3)]["uniq_id"]
    assert newcomer.startswith("a-") and newcomer not in ("a", "b")
    assert sorted(p.name for p in (output / "rttm").iterdir()) == sorted(["a.rttm", "b.rttm", f"{newcomer}.rttm"])
    assert (output / "rttm" / "a.rttm").read_bytes() == rttm_a  # not labelled again
    listed = [json.loads(line)["uniq_id"] for line in (output / "manifest.jsonl").read_text().splitlines()]
    assert listed == ["a", "b", newcomer]


def test_each_id_case_gives_its_own_file_and_rttm_id(local_ray, tmp_path):
    manifest = write_jsonl(
        tmp_path / "manifest.jsonl", [{"audio_filepath": SPEECH, "duration": 4.0, "uniq_id": case} for case in ID_CASES]
    )
    output = tmp_path / "output"
    summary = run([manifest], output)
    rows = list(recordings(output).values())
    assert (summary["ok"], summary["errors"]) == (len(ID_CASES), 0)
    ids = [r["uniq_id"] for r in rows]
    assert len(set(ids)) == len(ID_CASES)
    files = sorted(p.name for p in (output / "rttm").iterdir())
    assert files == sorted(f"{i}.rttm" for i in ids)
    assert all(name.isprintable() and "?" not in name and " " not in name and "\u202e" not in name for name in files)
    rttm_ids = {file_id for name in files for file_id in read_rttm(str(output / "rttm" / name))}
    assert rttm_ids == set(ids)  # every RTTM's file-id field is its own id (the audio has speech)


def test_bad_lines_are_error_rows_naming_the_field_beside_ok_rows(local_ray, tmp_path):
    long_id = "é" * 100  # 200 bytes of UTF-8
    lines = [
        json.dumps({"audio_filepath": SPEECH, "duration": 4.0}),
        '{"audio_filepath": "%s", "num_speakers": 1e400}' % SILENCE,
        json.dumps({"audio_filepath": SILENCE, "num_speakers": 1e30}),
        json.dumps({"audio_filepath": SILENCE, "offset": "five"}),
    ] + [json.dumps({"audio_filepath": SILENCE, "uniq_id": long_id}, ensure_ascii=False)] * 101
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    output = tmp_path / "output"
    summary = run([manifest], output)
    rows = recordings(output)
    assert (summary["input_rows"], summary["ok"], summary["errors"]) == (105, 102, 3)
    assert rows[("manifest.jsonl", 1)]["status"] == "ok"
    assert "num_speakers: must be a finite number" in rows[("manifest.jsonl", 2)]["error"]
    assert "num_speakers: must be a whole number from 1 to 1000, got 1e+30" in rows[("manifest.jsonl", 3)]["error"]
    assert rows[("manifest.jsonl", 4)]["error"] == f"{manifest}:4: offset: could not convert 'five'"
    repeats = [rows[("manifest.jsonl", n)]["uniq_id"] for n in range(5, 106)]
    assert len(set(repeats)) == 101 and all(i.startswith(long_id) for i in repeats)
    assert len(list((output / "rttm").iterdir())) == 102


def test_bom_gzip_and_zstd_manifests_are_read_and_utf16_is_named(local_ray, tmp_path):
    line = lambda name: json.dumps({"audio_filepath": SILENCE, "uniq_id": name}) + "\n"  # noqa: E731
    (tmp_path / "m1-bom.jsonl").write_bytes(b"\xef\xbb\xbf" + (line("bom1") + line("bom2")).encode())
    (tmp_path / "m2.jsonl.gz").write_bytes(gzip.compress(line("gz").encode()))
    with pa.CompressedOutputStream(str(tmp_path / "m3.jsonl.zst"), "zstd") as f:
        f.write(line("zst").encode())
    (tmp_path / "m4-utf16.jsonl").write_bytes(line("utf16").encode("utf-16"))
    output = tmp_path / "output"
    summary = run([tmp_path / "m*"], output)
    rows = recordings(output)
    assert {k: r["uniq_id"] for k, r in rows.items() if r["status"] == "ok"} == {
        ("m1-bom.jsonl", 1): "bom1",
        ("m1-bom.jsonl", 2): "bom2",
        ("m2.jsonl.gz", 1): "gz",
        ("m3.jsonl.zst", 1): "zst",
    }
    assert "the manifest is UTF-16-LE" in rows[("m4-utf16.jsonl", 1)]["error"]
    assert (summary["ok"], summary["errors"]) == (4, 1)


def test_dry_run_checks_every_row_and_writes_nothing(local_ray, tmp_path):
    import pipeline

    for part in range(2):
        lines = []
        for i in range(150):
            if i % 3 == 0:
                lines.append(json.dumps({"audio_filepath": SILENCE, "uniq_id": f"s{part}-{i}", "duration": 1.0}))
            elif i % 3 == 1:
                lines.append(json.dumps({"audio_filepath": f"missing-{i}.wav", "duration": 3.0}))
            else:
                lines.append(
                    "{not json" if i % 2 else json.dumps({"audio_filepath": SPEECH, "uniq_id": f"t{part}-{i}"})
                )
        (tmp_path / f"part{part}.jsonl").write_text("\n".join(lines) + "\n")
    output = tmp_path / "never-written"
    report = pipeline.run_corpus([str(tmp_path / "part*.jsonl")], str(output), dry_run=True)
    assert not output.exists()
    assert (report["input_rows"], report["ok"], report["errors"]) == (300, 150, 150)
    assert report["errors_by_reason"]["audio file not found"] == 100
    assert sum(report["errors_by_reason"].values()) == 150 and len(report["error_examples"]) == 20
    assert report["audio_hours"] == pytest.approx(100 / 3600) and report["ok_rows_without_duration"] == 50
    assert report["estimated_actor_hours"] > 0

    checked = pipeline.run_corpus([str(tmp_path / "part*.jsonl")], str(output), dry_run=True, check_audio=True)
    speech_seconds = 50 * pipeline.io.audio.audio_info(SPEECH).duration
    assert (
        checked["audio_hours"] == pytest.approx((100 + speech_seconds) / 3600)
        and checked["ok_rows_without_duration"] == 0
    )
    assert not output.exists()


def test_dry_run_from_the_command_line_prints_the_report(local_ray, tmp_path, capsys):
    from pipeline.cli import main

    manifest = write_jsonl(
        tmp_path / "m.jsonl", [{"audio_filepath": SILENCE, "duration": 1.0}, {"audio_filepath": "gone.wav"}]
    )
    assert main(["diarize", "--manifest", str(manifest), "--output", str(tmp_path / "out"), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "dry run: 2 input rows (0 already recorded): 1 ok, 1 error" in printed and "audio file not found" in printed
    assert not (tmp_path / "out").exists()


def test_a_large_all_error_manifest_is_committed_as_it_goes_in_parts_of_many_rows(local_ray, tmp_path, monkeypatch):
    """Commits are counted, not timed (timing is the benchmark's): bad lines and rows whose local
    audio is missing are error rows from the read on, committed `ERROR_ROWS_PER_PART` at a time
    (500 here, 10,000 by default), never a model batch at a time; the watcher sees some of the
    parts committed before the run returns. (6,000 rows: the million-row driver is the
    benchmark's, `benchmarks/`.)"""
    monkeypatch.setattr("pipeline.corpus.plan.ERROR_ROWS_PER_PART", 500)
    rows = 6_000
    with open(tmp_path / "errors.jsonl", "w") as f:
        for i in range(rows):
            f.write("{broken\n" if i % 2 else json.dumps({"audio_filepath": f"gone/{i}.wav", "duration": 5.0}) + "\n")
    output = tmp_path / "output"
    seen_while_running: list[int] = []

    def watch(stop: threading.Event) -> None:
        seen: set[str] = set()
        while not stop.is_set():
            for part in (output / "recordings").glob("part-*.parquet") if (output / "recordings").exists() else []:
                seen.add(part.name)
            if not seen_while_running or seen_while_running[-1] != len(seen):
                seen_while_running.append(len(seen))
            stop.wait(0.01)

    stop = threading.Event()
    watcher = threading.Thread(target=watch, args=(stop,))
    watcher.start()
    try:
        summary = run([tmp_path / "errors.jsonl"], output)
    finally:
        stop.set()
        watcher.join()
    assert (summary["input_rows"], summary["ok"], summary["errors"]) == (rows, 0, rows)
    assert summary["errors_by_reason"]["audio file not found: <file>"] == rows // 2
    parts = sorted((output / "recordings").glob("part-*.parquet"))
    sizes = [pq.ParquetFile(part).metadata.num_rows for part in parts]
    assert sum(sizes) == rows
    assert len(parts) == 12 and min(sizes) >= 400, sizes  # many commits, each of many rows
    # they landed as the run went: the watcher saw the run with some parts and not yet all (the
    # parts of error rows come in a burst, so the count of steps seen depends on the host's speed)
    assert any(0 < seen < len(parts) for seen in seen_while_running), seen_while_running
    assert not (output / "rttm").exists() or not list((output / "rttm").iterdir())


def test_blocks_are_few_enough_for_the_driver_and_many_enough_to_commit_as_they_go():
    """Rows per block of the ok rows: whole batches; at most MAX_BLOCKS blocks however many rows give
    no duration (the driver tracks each block); a small corpus still spreads over several blocks."""
    import math

    from pipeline.corpus.plan import MAX_BLOCKS, MIN_BLOCKS, block_rows

    for rows in (1, 100, 20_000, 200_000, 1_000_000):
        for seconds in (None, 5.0, 3600.0):  # None: the rows give no duration
            known = (rows * seconds, rows) if seconds else (0.0, 0)
            per_block = block_rows(4, rows, *known)
            assert per_block % 4 == 0 and math.ceil(rows / per_block) <= MAX_BLOCKS, (rows, seconds, per_block)
    assert math.ceil(1000 / block_rows(4, 1000, 1000 * 5.0, 1000)) >= MIN_BLOCKS


def test_an_empty_manifest_and_an_unreachable_speaker_count_are_said_in_the_summary(local_ray, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    summary = run([empty], tmp_path / "empty-run")
    assert summary["input_rows"] == 0 and summary["notes"] == ["the manifests hold no rows: nothing to label"]

    manifest = write_jsonl(
        tmp_path / "m.jsonl", [{"audio_filepath": str(SPEECH), "duration": 4.0, "num_speakers": 1000}]
    )
    summary = run([manifest], tmp_path / "run")
    (note,) = summary["notes"]
    assert note.startswith("1 ok row found fewer speakers than its num_speakers") and ": 1000 asked, " in note


def test_a_line_edited_before_resume_is_refused_and_a_line_inserted_above_is_not(local_ray, tmp_path):
    """Exactly once by line: an edited line (offset 0 -> 5) would be recorded twice, so the resume is
    refused naming it and nothing is written; a row inserted above the recorded ones shifts their
    line numbers without editing them, and only it is labelled."""
    rows = [{"audio_filepath": SPEECH, "duration": 4.0}, {"audio_filepath": SPEECH, "offset": 8.0, "duration": 4.0}]
    manifest = write_jsonl(tmp_path / "manifest.jsonl", rows)
    output = tmp_path / "output"
    run([manifest], output)
    before = sorted((output / "recordings").glob("part-*.parquet"))

    write_jsonl(manifest, [{**rows[0], "offset": 5.0}, rows[1]])
    with pytest.raises(
        UsageError, match=f"^1 manifest lines were edited since they were recorded \\(e.g. {manifest}:1\\)"
    ):
        run([manifest], output, resume=True)
    assert sorted((output / "recordings").glob("part-*.parquet")) == before

    inserted = {"audio_filepath": SPEECH, "offset": 16.0, "duration": 4.0}
    write_jsonl(manifest, [inserted, *rows])
    summary = run([manifest], output, resume=True)
    assert (summary["input_rows"], summary["recorded_rows"], summary["processed_this_run"]) == (3, 3, 1)


def test_retry_errors_labels_a_fixed_line_and_a_restored_file_once_each(local_ray, tmp_path):
    """--retry-errors: the error records of a bad JSON line (a block of errors only) and of a missing
    file (a block beside an ok row) are replaced by their new records, one per line, and kept in
    retried/; without it, the fixed line is refused as edited; a second retry has nothing to do."""
    missing = tmp_path / "later.wav"
    good = {"audio_filepath": SPEECH, "duration": 4.0}
    restored = {"audio_filepath": str(missing), "duration": 1.0}
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(json.dumps(good) + "\n{not json\n" + json.dumps(restored) + "\n")
    output = tmp_path / "output"
    first = run([manifest], output)
    assert (first["ok"], first["errors"]) == (1, 2)

    missing.write_bytes(Path(SILENCE).read_bytes())
    manifest.write_text("\n".join(json.dumps(row) for row in (good, {**good, "offset": 4.0}, restored)) + "\n")
    with pytest.raises(UsageError, match="--retry-errors labels them again"):
        run([manifest], output, resume=True)
    with pytest.raises(UsageError, match="^--retry-errors goes with --resume"):
        run([manifest], output, retry_errors=True)

    summary = run([manifest], output, resume=True, retry_errors=True)
    assert (summary["input_rows"], summary["recorded_rows"], summary["ok"], summary["errors"]) == (3, 3, 3, 0)
    assert (summary["processed_this_run"], summary["retried_errors"]) == (2, 2)
    assert sorted(line for _, line in recordings(output)) == [1, 2, 3]
    assert len(list((output / "rttm").glob("*.rttm"))) == 3
    kept = pq.read_table(output / "retried" / "recordings").to_pylist()
    assert sorted((r["line_number"], r["status"]) for r in kept) == [(2, "error"), (3, "error")]

    again = run([manifest], output, resume=True, retry_errors=True)
    assert (again["processed_this_run"], again["retried_errors"], again["recorded_rows"]) == (0, 0, 3)
