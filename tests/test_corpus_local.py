"""A corpus run from a local manifest into a local folder, read back with pyarrow."""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest
from conftest import (
    AMI,
    FAST_MODEL,
    ami_rows,
    in_process_segments,
    segments_by_recording,
    with_absolute_paths,
    write_jsonl,
)

NAMES = ("trñ00", "trn02", "trn03")


@pytest.fixture(scope="module")
def finished_run(local_ray, tmp_path_factory):
    """One complete run over a manifest with relative paths, sitting next to copies of the audio."""
    import pipeline

    corpus = tmp_path_factory.mktemp("corpus")
    for row in ami_rows(*NAMES):
        for key in ("audio_filepath", "rttm_filepath", "uem_filepath"):
            shutil.copy(AMI / row[key], corpus / row[key])
    manifest = write_jsonl(corpus / "manifest.jsonl", ami_rows(*NAMES))
    output = tmp_path_factory.mktemp("output")
    summary = pipeline.run_corpus([str(manifest)], str(output), batch_size=2)
    return manifest, output, summary


def test_segments_equal_in_process_diarize(finished_run):
    _, output, _ = finished_run
    segments = pq.read_table(output / "segments")
    assert segments_by_recording(segments) == in_process_segments(*NAMES)
    assert set(segments.column("model").to_pylist()) == {"default"}


def test_one_recordings_row_per_input_row(finished_run):
    _, output, summary = finished_run
    recordings = pq.read_table(output / "recordings").to_pylist()
    assert sorted(r["uniq_id"] for r in recordings) == sorted(NAMES)
    assert all(r["status"] == "ok" and r["error"] is None for r in recordings)
    assert all(r["duration"] == pytest.approx(30.0, abs=0.01) for r in recordings)
    assert (summary["input_rows"], summary["ok"], summary["errors"]) == (3, 3, 0)


def test_rttm_per_recording_matches_segments(finished_run):
    _, output, _ = finished_run
    expected = in_process_segments(*NAMES)
    for name in NAMES:
        lines = (output / "rttm" / f"{name}.rttm").read_text(encoding="utf-8").splitlines()
        assert len(lines) == len(expected.get(name, []))
        assert all(line.split()[1] == name for line in lines)
    assert not list((output / "rttm").glob(".*")), "no temporary files are left behind"


def test_output_manifest_points_at_written_rttms(finished_run):
    _, output, _ = finished_run
    rows = [json.loads(line) for line in (output / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["uniq_id"] for r in rows] == list(NAMES)
    assert all(r["rttm_filepath"] == str(output / "rttm" / f"{r['uniq_id']}.rttm") for r in rows)
    assert all(r["reference_rttm_filepath"].endswith(f"{r['uniq_id']}.rttm") for r in rows)


def test_ray_sorts_the_output_manifest_of_a_large_run_into_the_same_bytes(finished_run):
    """Small runs sort the output manifest on the driver; above `DRIVER_MANIFEST_ROWS` Ray sorts
    it (read, sort, one part per block, concatenated): both give the same file."""
    from pipeline.corpus.finalize import MANIFEST_PARTS, write_output_manifest
    from pipeline.corpus.outputs import OutputLayout

    _, output, _ = finished_run
    by_driver = (output / "manifest.jsonl").read_bytes()
    write_output_manifest(OutputLayout(str(output)), recordings=len(NAMES), on_driver=False)
    assert (output / "manifest.jsonl").read_bytes() == by_driver
    assert not (output / MANIFEST_PARTS).exists()


def test_summary_json_has_counts_config_and_versions(finished_run):
    _, output, _ = finished_run
    summary = json.loads((output / "summary.json").read_text(encoding="utf-8"))
    assert summary["audio_hours"] == summary["audio_hours_this_run"] == pytest.approx(3 * 30 / 3600, rel=1e-3)
    assert summary["audio_seconds_per_wall_second"] > 0
    assert summary["config"]["model"] == "default" and "ray" in summary["versions"]


def footer_readers() -> int:
    """Ray Data's Parquet footer-reading actors the session's Ray has created so far (its GCS keeps the dead)."""
    from ray._private import state

    return sum(actor["ActorClassName"] == "FooterReader" for actor in state.actors().values())


def test_resume_of_a_finished_run_adds_nothing(finished_run):
    """...and reads its recordings parts on one footer-reading actor (Ray Data's default pool: 32)."""
    import pipeline

    manifest, output, _ = finished_run
    before = footer_readers()
    summary = pipeline.run_corpus([str(manifest)], str(output), batch_size=2, resume=True)
    assert (summary["processed_this_run"], summary["skipped_by_resume"], summary["recorded_rows"]) == (0, 3, 3)
    assert footer_readers() - before == 1
    # the output's audio, but none of it this run's (the console's "0.0 s of audio in ...")
    assert summary["audio_hours"] > 0 and (
        summary["audio_hours_this_run"],
        summary["audio_seconds_per_wall_second"],
    ) == (0, 0)


def test_the_footer_reader_pool_follows_the_parts_unless_the_user_sized_it(monkeypatch):
    import os

    from pipeline.corpus.outputs import FOOTER_READER_VARIABLE, footer_readers_for

    monkeypatch.delenv(FOOTER_READER_VARIABLE, raising=False)
    for parts, readers in ((1, "1"), (10, "1"), (11, "2"), (315, "32"), (100_000, "32")):
        with footer_readers_for(parts):
            assert os.environ[FOOTER_READER_VARIABLE] == readers
        assert FOOTER_READER_VARIABLE not in os.environ
    monkeypatch.setenv(FOOTER_READER_VARIABLE, "7")
    with footer_readers_for(1):
        assert os.environ[FOOTER_READER_VARIABLE] == "7"
    assert os.environ[FOOTER_READER_VARIABLE] == "7"


def test_rerun_without_resume_refuses_to_mix_outputs(finished_run):
    import pipeline

    manifest, output, _ = finished_run
    with pytest.raises(FileExistsError, match="--resume"):
        pipeline.run_corpus([str(manifest)], str(output))


def test_cli_evaluates_and_prints_segments(finished_run, capsys):
    from pipeline.cli import main

    manifest, output, _ = finished_run
    assert (
        main(
            [
                "diarize",
                "--manifest",
                str(manifest),
                "--output",
                str(output),
                "--resume",
                "--evaluate",
                "--print-segments",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "OVERALL" in printed and "DER" in printed and "conf" in printed
    first = in_process_segments(*NAMES)["trñ00"][0].split()
    assert f"{float(first[0]):9.3f} {float(first[1]):9.3f}  {first[2]}" in printed
    assert "3 input rows: 3 ok, 0 errors" in printed


def test_an_exclusive_run_has_one_speaker_at_a_time_over_the_in_process_speech(local_ray, tmp_path):
    import pipeline
    from pipeline.export.formats import to_annotation

    manifest = write_jsonl(tmp_path / "m.jsonl", [with_absolute_paths(r) for r in ami_rows("trn03")])
    pipeline.run_corpus([str(manifest)], str(tmp_path / "run"), model=FAST_MODEL, exclusive=True)
    exclusive = segments_by_recording(pq.read_table(tmp_path / "run" / "segments"))["trn03"]
    turns = sorted((s.split() for s in exclusive), key=lambda t: float(t[0]))
    assert all(float(a[1]) <= float(b[0]) + 1e-6 for a, b in zip(turns, turns[1:])), "never two speakers at once"
    regular = in_process_segments("trn03", model=FAST_MODEL)["trn03"]
    speech = [(s.start, s.end) for s in to_annotation(regular).get_timeline().support()]
    covered = [(s.start, s.end) for s in to_annotation(exclusive).get_timeline().support()]
    assert len(speech) == len(covered) and all(
        abs(a - c) <= 0.002 and abs(b - d) <= 0.002 for (a, b), (c, d) in zip(speech, covered)
    )
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["config"]["exclusive"] is True


def test_a_resume_with_another_model_or_setting_is_refused_naming_each(finished_run):
    import pipeline
    from pipeline.errors import UsageError

    manifest, output, _ = finished_run
    with pytest.raises(
        UsageError,
        match=r'^--resume continues the run in .* these differ: --model "default" \(now "ge2e"\); '
        r"--exclusive false \(now true\); rerun with the run's options, or choose another --output$",
    ):
        pipeline.run_corpus([str(manifest)], str(output), resume=True, model=FAST_MODEL, exclusive=True)
    assert json.loads((output / "run_options.json").read_text())["model"] == "default"


def test_a_truncated_part_is_named_in_one_line_and_repair_redoes_its_rows_once(local_ray, tmp_path):
    import pipeline
    from pipeline.corpus.outputs import DamagedOutput
    from pipeline.export.report import write_report

    names = ("trn02", "trn03")
    manifest = write_jsonl(tmp_path / "m.jsonl", [with_absolute_paths(r) for r in ami_rows(*names)])
    output = tmp_path / "run"
    pipeline.run_corpus([str(manifest)], str(output), model=FAST_MODEL, batch_size=1)
    parts = sorted((output / "recordings").glob("part-*.parquet"))
    assert len(parts) == 2
    parts[0].write_bytes(parts[0].read_bytes()[:40])  # a copy cut short
    for attempt in (
        lambda: pipeline.run_corpus([str(manifest)], str(output), model=FAST_MODEL, resume=True),
        lambda: write_report(str(output)),
    ):
        with pytest.raises(DamagedOutput) as refused:
            attempt()
        message = str(refused.value)
        assert "\n" not in message and message.startswith(str(parts[0]))
        assert "a committed part is damaged; rerun with --resume --repair" in message
    summary = pipeline.run_corpus([str(manifest)], str(output), model=FAST_MODEL, resume=True, repair=True)
    assert (summary["input_rows"], summary["recorded_rows"], summary["ok"]) == (2, 2, 2)
    recordings = pq.read_table(output / "recordings").to_pylist()
    assert sorted((r["manifest"], r["line_number"]) for r in recordings) == [(str(manifest), 1), (str(manifest), 2)]
    assert sorted(p.stem for p in (output / "rttm").glob("*.rttm")) == sorted(names)
    assert (output / "damaged" / "recordings" / parts[0].name).exists()
