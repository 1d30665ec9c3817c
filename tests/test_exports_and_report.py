"""Exports read back by the library of each format, `to_annotation`, and the run report opened in a
real headless Chromium (Debian's package), for a local run and the same run copied to S3 (moto)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import FAST_MODEL, ami_rows, with_absolute_paths, write_jsonl
from helpers import FAR_FIELD_YAML

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def labelled_run(local_ray, tmp_path_factory):
    """A finished, scored run of two AMI excerpts that have references."""
    from pipeline.corpus import run_corpus
    from pipeline.scoring.evaluate import evaluate_run

    folder = tmp_path_factory.mktemp("labelled")
    manifest = write_jsonl(folder / "manifest.jsonl", [with_absolute_paths(r) for r in ami_rows("trñ00", "trn03")])
    output = str(folder / "run")
    run_corpus([str(manifest)], output, model=FAST_MODEL, postprocessing_yaml=str(FAR_FIELD_YAML))
    evaluate_run(output)
    return output


def committed_turns(output: str) -> dict[str, list[tuple[float, float, str]]]:
    from pipeline.corpus.outputs import OutputLayout

    turns: dict[str, list] = {}
    for row in OutputLayout(output).read_table("segments").to_pylist():
        turns.setdefault(row["uniq_id"], []).append((row["start"], row["end"], row["speaker"]))
    return {uid: sorted(t) for uid, t in turns.items()}


def merged(turns):
    from pipeline.export.formats import merged_by_speaker
    from pipeline.io.rttm import Turn

    return sorted((s, e, spk) for spk, spans in merged_by_speaker([Turn(*t) for t in turns]).items() for s, e in spans)


def read_back(fmt: str, path: str) -> list[tuple[float, float, str]]:
    """The turns a file holds, read by the library that owns its format."""
    if fmt == "json":
        return [
            (s["start"], s["end"], s["speaker"]) for s in json.loads(Path(path).read_text(encoding="utf-8"))["segments"]
        ]
    if fmt == "csv":
        with open(path, encoding="utf-8", newline="") as f:
            return [(float(r["start"]), float(r["end"]), r["speaker"]) for r in csv.DictReader(f)]
    if fmt == "audacity":
        with open(path, encoding="utf-8", newline="") as f:
            return [(float(a), float(b), c) for a, b, c in csv.reader(f, delimiter="\t")]
    if fmt == "eaf":
        from pympi.Elan import Eaf

        eaf = Eaf(path)
        return [
            (a / 1000, b / 1000, value)
            for tier in eaf.get_tier_names()
            for a, b, value in eaf.get_annotation_data_for_tier(tier)
        ]
    if fmt == "textgrid":
        from praatio import textgrid

        grid = textgrid.openTextgrid(path, includeEmptyIntervals=False)
        return [(e.start, e.end, e.label) for name in grid.tierNames for e in grid.getTier(name).entries]
    import webvtt

    captions = webvtt.read(path) if fmt == "vtt" else webvtt.from_srt(path)
    return [
        (
            c.start_in_seconds + c.start_time.milliseconds / 1000,
            c.end_in_seconds + c.end_time.milliseconds / 1000,
            c.text,
        )
        for c in captions
    ]


@pytest.fixture(scope="module")
def every_export(labelled_run, tmp_path_factory):
    """`export --format all` of the labelled run: {format: files}."""
    from pipeline.export.formats import export_run

    dest = tmp_path_factory.mktemp("exports")
    written = export_run(labelled_run, "all", str(dest))
    return {
        fmt: sorted(path for path in written if Path(path).parent.name == fmt)
        for fmt in {Path(p).parent.name for p in written}
    }


@pytest.mark.parametrize("fmt", ["json", "csv", "eaf", "textgrid", "audacity", "vtt", "srt"])
def test_every_export_format_reads_back_with_its_library(labelled_run, every_export, fmt):
    written = every_export[fmt]
    expected = committed_turns(labelled_run)
    assert len(written) == 2 and set(expected) == {"trñ00", "trn03"}
    for path in written:
        uid = Path(path).name.rsplit(".", 1)[0]
        want = merged(expected[uid]) if fmt in ("eaf", "textgrid") else expected[uid]  # tiers may not overlap
        got = sorted(read_back(fmt, path))
        assert len(got) == len(want) > 0
        for (s1, e1, k1), (s2, e2, k2) in zip(got, want):
            assert k1 == k2 and abs(s1 - s2) <= 0.001 and abs(e1 - e2) <= 0.001
        if fmt in ("srt", "vtt", "csv", "audacity"):
            assert Path(path).read_bytes().endswith(b"\n"), "a text file ends with its line end"


def test_the_training_manifest_has_single_speaker_segments_within_bounds(labelled_run, every_export):
    """nemo-manifest: every line is one speaker alone (no other speaker's turn overlaps it), between
    1 and 20 s, on the audio file's timeline; read back with the project's NeMo manifest reader."""
    from pipeline.io.manifest import read_manifest

    (path,) = every_export["nemo-manifest"]
    lines = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]
    rows = read_manifest(path)
    assert len(rows) == len(lines) >= 4
    turns = committed_turns(labelled_run)
    for line in lines:
        start, end, speaker = line["offset"], line["offset"] + line["duration"], line["speaker"]
        assert 1.0 - 1e-3 <= line["duration"] <= 20.0 + 1e-3 and line["label"] == speaker
        own = turns[line["uniq_id"]]
        assert any(s <= start + 1e-3 and end - 1e-3 <= e for s, e, k in own if k == speaker)
        assert not any(s < end - 1e-3 and e > start + 1e-3 for s, e, k in own if k != speaker), "no overlap"


def test_export_names_global_speakers_and_refuses_an_output_a_run_holds(labelled_run, tmp_path):
    from pipeline.corpus.lease import OutputInUse, OutputLease
    from pipeline.errors import UsageError
    from pipeline.export.formats import export_run
    from pipeline.linking.run import link_run

    run = str(shutil.copytree(labelled_run, tmp_path / "run"))  # linked here, not in the shared run
    with pytest.raises(UsageError, match="has no global speaker ids; run `python -m pipeline link-speakers"):
        export_run(run, "csv", str(tmp_path / "none"), global_ids=True)
    link_run(run)
    links = pq_rows(Path(run) / "speaker_links.parquet")
    written = export_run(run, "csv,json", str(tmp_path / "global"), global_ids=True)
    assert sorted({Path(p).parent.name for p in written}) == ["csv", "json"] and len(written) == 4
    for path in (p for p in written if p.endswith(".json")):
        document = json.loads(Path(path).read_text(encoding="utf-8"))
        named = {row["global_speaker"] for row in links if row["uniq_id"] == document["uniq_id"]}
        assert set(document["speakers"]) <= named | {s for s in document["speakers"] if s.startswith("unlinked/")}
        assert document["speakers"] and all(s.startswith(("G", "unlinked/")) for s in document["speakers"])
    with OutputLease(run).acquire(resume=True):
        with pytest.raises(OutputInUse, match="is in use by another run .*; export once it has ended"):
            export_run(run, "csv", str(tmp_path / "busy"))


def pq_rows(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def test_to_annotation_gives_the_run_as_a_pyannote_annotation(labelled_run):
    import pandas as pd

    import pipeline

    segments = pd.read_parquet(f"{labelled_run}/segments")
    one = segments[segments.uniq_id == "trn03"]
    annotation = pipeline.to_annotation(one)
    assert annotation.uri == "trn03"
    assert sorted(annotation.labels()) == sorted(one.speaker.unique())
    assert abs(sum(s.duration for s, _ in annotation.itertracks()) - one.duration.sum()) < 1e-6


def test_hypothesis_speakers_take_their_matched_reference_colour():
    from pipeline.export.report import speaker_colours
    from pipeline.io.rttm import Turn

    reference = [Turn(0, 10, "alice"), Turn(10, 20, "bob")]
    hypothesis = [Turn(0, 9, "speaker_1"), Turn(9, 20, "speaker_0"), Turn(20, 21, "speaker_2")]
    ref, hyp = speaker_colours(reference, hypothesis)
    assert hyp["speaker_1"] == ref["alice"] and hyp["speaker_0"] == ref["bob"]
    assert hyp["speaker_2"] not in ref.values()


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI: `make install` installs it (apt-get install chromium)")
        pytest.skip("headless Chromium not installed and no CI=true: `apt-get install chromium` to run this test")
    return found


def headless_chromium(page: Path, tmp_path: Path, *flags: str) -> str:
    """Opens `page` in headless Chromium with `flags`; returns what it printed (`--dump-dom`: the DOM
    after the page's scripts ran)."""
    done = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1100,1400",
            *flags,
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout


def screenshot(page: Path, png: Path, tmp_path: Path) -> None:
    headless_chromium(page, tmp_path, f"--screenshot={png}")


def test_report_opens_in_headless_chromium(labelled_run, tmp_path):
    import matplotlib.image
    import numpy as np

    from pipeline.export.report import write_report

    page = Path(write_report(labelled_run))
    assert page == Path(labelled_run) / "report.html"
    text = page.read_text(encoding="utf-8")
    assert (
        "DER over 2 scored recordings" in text
        and "<audio" in text
        and "trñ00" in text
        and "http" not in text.replace("http://www.w3.org/2000/svg", "")
    )
    assert "<th>missed speech</th><th>false alarm</th><th>confusion</th>" in text  # the DER, broken down
    assert text.count('<p class="speech">speech per speaker: speaker_') == 2
    png = Path(os.environ.get("REPORT_SCREENSHOT_PNG", tmp_path / "report.png"))
    screenshot(page, png, tmp_path)
    pixels = matplotlib.image.imread(png)[..., :3]
    not_white = (pixels < 0.9).any(axis=-1).mean()
    colours = len(np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0))
    assert not_white > 0.02 and colours > 20, (not_white, colours)


# Run after the report's own script, as a user's clicks would: the DER heading twice, then a click
# 10 s into the first timeline; what the page then shows is written into it for --dump-dom.
CLICKS = """<script>
const table = [...document.querySelectorAll("table.sortable")].find((t) => t.tHead.textContent.includes("speakers"));
const heading = [...table.tHead.rows[0].cells].find((th) => th.textContent === "DER");
const column = () => [...table.tBodies[0].rows].map((row) => row.cells[heading.cellIndex].textContent);
heading.click();
const up = column();
heading.click();
const down = column();
const svg = document.querySelector("section.recording svg");
const x = svg.getBoundingClientRect().left + Number(svg.dataset.left) + 10 / Number(svg.dataset.secondsPerPixel);
svg.dispatchEvent(new MouseEvent("click", {clientX: x, bubbles: true}));
const audio = svg.closest("section").querySelector("audio");
const seen = {up, down, sort: heading.getAttribute("aria-sort"), seconds: audio.currentTime};
document.body.insertAdjacentHTML("beforeend", `<pre id="clicked">${JSON.stringify(seen)}</pre>`);
</script>"""


def test_report_tables_sort_by_the_heading_clicked_and_a_timeline_click_plays_from_there(labelled_run, tmp_path):
    import html
    import json
    import re

    from pipeline.export.report import write_report

    page = Path(write_report(labelled_run))
    clicked = page.with_name("report-clicked.html")  # beside the report: its audio sources are relative
    try:
        clicked.write_text(page.read_text(encoding="utf-8").replace("</body>", CLICKS + "</body>"), encoding="utf-8")
        dom = headless_chromium(clicked, tmp_path, "--dump-dom", "--virtual-time-budget=2000")
    finally:
        clicked.unlink(missing_ok=True)
    *_, written = re.findall(r'<pre id="clicked">(.*?)</pre>', dom, re.S)  # the first is in the script's text
    seen = json.loads(html.unescape(written))
    ders = [float(value.rstrip("%")) for value in seen["up"]]
    assert len(ders) == 2 and ders == sorted(ders) and ders[0] < ders[1], seen
    assert seen["down"] == seen["up"][::-1] and seen["sort"] == "descending"
    assert abs(seen["seconds"] - 10.0) < 0.05, seen


def test_export_and_report_work_on_an_s3_run(labelled_run, s3_endpoint, tmp_path):
    import s3fs

    from pipeline.export.formats import export_run
    from pipeline.export.report import write_report
    from pipeline.io.storage import storage_options

    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint)
    fs.mkdir("runs")
    fs.put(labelled_run, "runs/ami", recursive=True)
    options = storage_options(endpoint_url=s3_endpoint)
    written = export_run("s3://runs/ami", "eaf", storage_options=options)
    assert sorted(written) == ["s3://runs/ami/export/eaf/trn03.eaf", "s3://runs/ami/export/eaf/trñ00.eaf"]
    assert write_report("s3://runs/ami", storage_options=options) == "s3://runs/ami/report.html"
    fs.invalidate_cache()
    assert b"DER over 2 scored recordings" in fs.cat("runs/ami/report.html")


def test_limit_runs_the_first_rows_and_a_later_run_resumes_the_rest(local_ray, tmp_path):
    from pipeline.corpus import run_corpus

    rows = [
        with_absolute_paths(ami_rows("trn02")[0]),
        {"audio_filepath": str(tmp_path / "gone.wav")},
        {"audio_filepath": str(tmp_path / "gone2.wav")},
    ]
    manifest = str(write_jsonl(tmp_path / "manifest.jsonl", rows))
    trial = run_corpus([manifest], str(tmp_path / "run"), model=FAST_MODEL, limit=1)
    assert (trial["input_rows"], trial["ok"], trial["errors"]) == (1, 1, 0)
    rest = run_corpus([manifest], str(tmp_path / "run"), model=FAST_MODEL, resume=True)
    assert (rest["input_rows"], rest["ok"], rest["errors"], rest["skipped_by_resume"]) == (3, 1, 2, 1)
