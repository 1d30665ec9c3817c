"""Scoring a corpus run (`python -m pipeline evaluate`): figures equal pyannote.metrics called
directly, outputs written to eval/, presets and collar as md-eval/NeMo mean them."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from conftest import AMI
from pyannote.metrics.diarization import DiarizationErrorRate, JaccardErrorRate

from pipeline.cli import main
from pipeline.io.rttm import read_rttm, read_uem
from pipeline.scoring.evaluate import evaluate_run
from pipeline.scoring.metrics import to_annotation, to_timeline

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ami_run(local_ray, tmp_path_factory):
    import pipeline

    output = tmp_path_factory.mktemp("ami_run")
    pipeline.run_corpus([str(AMI / "manifest.jsonl")], str(output), batch_size=4)
    return output


def pyannote_directly(output, collar, skip_overlap):
    """The same scores, computed without this project's scoring code."""
    der = DiarizationErrorRate(collar=2 * collar, skip_overlap=skip_overlap)
    jer = JaccardErrorRate(collar=2 * collar, skip_overlap=skip_overlap)
    for line in (AMI / "manifest.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        name = row["audio_filepath"][:-4]
        hypothesis_path = output / "rttm" / f"{name}.rttm"
        if not hypothesis_path.exists():
            continue
        reference = to_annotation(read_rttm(str(AMI / row["rttm_filepath"]))[name], name)
        hypothesis = to_annotation(read_rttm(str(hypothesis_path)).get(name, []), name)
        uem = to_timeline(read_uem(str(AMI / row["uem_filepath"]))[name], name)
        der(reference, hypothesis, uem=uem)
        jer(reference, hypothesis, uem=uem)
    return abs(der), abs(jer), der


@pytest.mark.parametrize("collar,skip_overlap", [(0.25, False), (0.0, False), (0.25, True)])
def test_run_scores_equal_pyannote_metrics_called_directly(ami_run, collar, skip_overlap):
    per_recording, overall = evaluate_run(
        str(ami_run), [str(AMI / "manifest.jsonl")], collar=collar, skip_overlap=skip_overlap
    )
    expected_der, expected_jer, metric = pyannote_directly(ami_run, collar, skip_overlap)
    assert len(per_recording) == 10  # every excerpt with a reference (silence-1s has none)
    assert overall["der"] == pytest.approx(expected_der, abs=1e-9)
    assert overall["jer"] == pytest.approx(expected_jer, abs=1e-9)
    assert overall["missed_speech_sec"] == pytest.approx(metric["missed detection"], abs=1e-6)
    assert overall["confusion_sec"] == pytest.approx(metric["confusion"], abs=1e-6)


def test_cli_writes_eval_tables_and_prints_the_table(ami_run, capsys):
    assert main(["evaluate", "--output", str(ami_run), "--preset", "forgiving"]) == 0
    printed = capsys.readouterr().out
    assert "OVERALL (10)" in printed and "trñ00" in printed and "overlap skipped" in printed
    table = pq.read_table(ami_run / "eval" / "recordings.parquet")
    assert table.num_rows == 10 and table.schema.field("der").type == "double"
    summary = json.loads((ami_run / "eval" / "summary.json").read_text())
    assert summary["collar"] == 0.25 and summary["skip_overlap"] is True
    assert summary["der"] == pytest.approx(pyannote_directly(ami_run, 0.25, True)[0], abs=1e-9)


def test_a_folder_without_a_run_and_an_unfinished_run_are_one_line_each(ami_run, tmp_path, capfd):
    """No recordings/: the command to run first. Recordings but no summary.json (a run stopped before its
    end, so the run's manifests are not written down): finish it, or name the manifests to score."""
    import shutil

    assert main(["evaluate", "--output", str(tmp_path / "empty")]) == 2
    assert "holds no corpus run (no recordings/): run `python -m pipeline diarize` first" in capfd.readouterr().err
    unfinished = shutil.copytree(ami_run, tmp_path / "unfinished", ignore=shutil.ignore_patterns("summary.json"))
    assert main(["evaluate", "--output", str(unfinished)]) == 2
    assert "has no summary.json (the run did not finish)" in capfd.readouterr().err
    assert main(["evaluate", "--output", str(unfinished), "--manifest", str(AMI / "manifest.jsonl")]) == 0
    assert "OVERALL (10)" in capfd.readouterr().out


def test_a_reference_that_is_no_rttm_is_left_unscored_with_its_reason(local_ray, tmp_path):
    """A row's `rttm_filepath` escaping to a file that is not an RTTM (`../../outside.txt`, as
    `/etc/passwd` would be): that row is not scored (never as 0 speakers), the others are."""
    from pipeline.corpus.inputs import manifest_items
    from pipeline.corpus.outputs import OutputLayout
    from pipeline.corpus.tables import recordings_table, segments_table
    from pipeline.io.ids import row_keys

    (tmp_path / "outside.txt").write_text("root:x:0:0:root:/root:/bin/bash\n")
    corpus = tmp_path / "a" / "b"
    corpus.mkdir(parents=True)
    rows = [
        {"audio_filepath": str(AMI / "trn02.wav"), "rttm_filepath": str(AMI / "trn02.rttm")},
        {"audio_filepath": str(AMI / "trn03.wav"), "rttm_filepath": "../../outside.txt"},
    ]
    manifest = corpus / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    layout = OutputLayout(str(tmp_path / "run"))
    with open(manifest, "rb") as f:
        items = list(manifest_items(f, str(manifest)))
    records = []
    for number, item in enumerate(items, start=1):
        turns = read_rttm(str(AMI / "trn02.rttm"))["trn02"]
        records.append(
            {
                "uniq_id": item["candidate"],
                "audio_filepath": json.loads(item["manifest_row"])["audio_filepath"],
                "manifest": str(manifest),
                "line_number": number,
                "status": "ok",
                "error": "",
                "segments": "\n".join(f"{t.start:.3f} {t.end:.3f} {t.speaker}" for t in turns),
                "audio_seconds": 30.0,
                "row_key": row_keys([item["recording_hash"]])[0],
                "manifest_row": item["manifest_row"],
            }
        )
    layout.write_part("segments", "0", segments_table(records, "default"))
    layout.write_part("recordings", "0", recordings_table(records, "default"))
    per_recording, overall = evaluate_run(str(tmp_path / "run"), [str(manifest)])
    assert [r["uniq_id"] for r in per_recording] == ["trn02"] and overall["der"] == 0.0
    (unscored,) = overall["unscored"]
    assert unscored["uniq_id"] == "trn03" and "not an RTTM file: line 1 is no RTTM record" in unscored["reason"]
