"""`write_report`: one self-contained HTML page about a corpus run (`RUN/report.html`).

Run summary, the error rows with their reasons, the DER spread when the manifests name references
(scored by `pipeline.scoring.evaluate`, or read from a previous `eval/`), speakers per recording, and a
who-spoke-when timeline per recording, the worst first when scored. Hypothesis speakers take the
colour of the reference speaker the optimal one-to-one mapping gives them (pyannote.metrics, the
Hungarian assignment DER itself uses), so a correct speaker looks the same in both lanes. Local
audio gets a player. Inline SVG and CSS only: the page opens anywhere, offline, with no scripts."""

from __future__ import annotations

import html
import json
import os
import statistics
from typing import Any

from pipeline.io.rttm import Turn

# Colour-blind-friendly first (Okabe-Ito), then tab10's rest.
PALETTE = [
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#D55E00",
    "#56B4E9",
    "#F0E442",
    "#000000",
    "#8c564b",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#9467bd",
    "#e377c2",
]
UNMATCHED = "#b0b0b0"


def speaker_colours(reference: list[Turn], hypothesis: list[Turn]) -> tuple[dict[str, str], dict[str, str]]:
    """Colours of reference and hypothesis speakers; a hypothesis speaker mapped to a reference
    speaker by the optimal mapping shares its colour, the others take the next free ones."""
    from pyannote.metrics.diarization import DiarizationErrorRate

    from pipeline.export.formats import to_annotation

    ref_names = sorted({t.speaker for t in reference})
    ref_colours = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(ref_names)}
    mapping = (
        DiarizationErrorRate().optimal_mapping(to_annotation(reference), to_annotation(hypothesis))
        if reference and hypothesis
        else {}
    )
    hyp_colours, spare = {}, iter(PALETTE[len(ref_names) :] + [UNMATCHED] * 64)
    for name in sorted({t.speaker for t in hypothesis}):
        hyp_colours[name] = ref_colours[mapping[name]] if name in mapping else next(spare)
    return ref_colours, hyp_colours


def timeline_svg(duration: float, lanes: list[tuple[str, list[Turn], dict[str, str]]], width: int = 960) -> str:
    """Who spoke when: one row per (lane, speaker), seconds on the x axis."""
    rows = [
        (lane, speaker, [t for t in turns if t.speaker == speaker], colours[speaker])
        for lane, turns, colours in lanes
        for speaker in sorted({t.speaker for t in turns})
    ]
    label_width, row_height, axis, right = 170, 16, 18, 24  # `right`: room for the last tick's label
    height = len(rows) * row_height + axis + 4
    scale = (width - label_width - right) / max(duration, 1e-6)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'data-left="{label_width}" data-seconds-per-pixel="{1 / scale:.6g}">'
    ]
    for index, (lane, speaker, turns, colour) in enumerate(rows):
        y = index * row_height
        parts.append(f'<text x="0" y="{y + 12}" class="lane">{html.escape(lane)} {html.escape(speaker)}</text>')
        parts.append(
            f'<rect x="{label_width}" y="{y + 2}" width="{width - label_width - right}" '
            f'height="{row_height - 4}" fill="#f3f3f3"/>'
        )
        for t in turns:
            parts.append(
                f'<rect x="{label_width + t.start * scale:.1f}" y="{y + 2}" '
                f'width="{max((t.end - t.start) * scale, 0.8):.1f}" '
                f'height="{row_height - 4}" fill="{colour}">'
                f"<title>{html.escape(speaker)} {t.start:.2f}-{t.end:.2f} s</title></rect>"
            )
    y = len(rows) * row_height
    step = nice_step(duration)
    tick = 0.0
    while tick <= duration + 1e-9:
        x = label_width + tick * scale
        parts.append(
            f'<line x1="{x:.1f}" y1="{y}" x2="{x:.1f}" y2="{y + 4}" stroke="#555"/>'
            f'<text x="{x:.1f}" y="{y + 15}" class="tick" text-anchor="middle">{tick:g}s</text>'
        )
        tick += step
    parts.append("</svg>")
    return "".join(parts)


def nice_step(duration: float) -> float:
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600):
        if duration / step <= 10:
            return float(step)
    return 7200.0


def speech_per_speaker(turns: list[Turn]) -> dict[str, float]:
    """Seconds each speaker speaks (their turns' union: overlapping turns of one speaker count once)."""
    from pipeline.export.formats import merged_by_speaker

    return {speaker: sum(end - start for start, end in spans) for speaker, spans in merged_by_speaker(turns).items()}


def table(headers: list[str] | None, rows: list[list[Any]]) -> str:
    """An HTML table; one with headers sorts by the column whose heading is clicked (PAGE_SCRIPT)."""
    head = "<thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in headers) + "</tr></thead>" if headers else ""
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    attributes = ' class="sortable"' if headers else ""
    return f"<table{attributes}>{head}<tbody>{body}</tbody></table>"


# The page's only script, inline (the report is one file, opened from disk or a bucket, no network):
# a click on a column heading sorts that table (again: reversed; numbers as numbers, empty cells
# last); a click on a timeline plays its recording from the time clicked.
PAGE_SCRIPT = """
function cellValue(row, column) {
  const text = row.cells[column].textContent.trim(), number = parseFloat(text);
  return text === "" ? null : /^-?[0-9.]/.test(text) && !isNaN(number) ? number : text;
}
document.querySelectorAll("table.sortable th").forEach((th) => th.addEventListener("click", () => {
  const body = th.closest("table").tBodies[0], column = th.cellIndex;
  const ascending = th.getAttribute("aria-sort") !== "ascending";
  th.parentElement.querySelectorAll("th").forEach((other) => other.removeAttribute("aria-sort"));
  th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  const rows = Array.from(body.rows).map((row, index) => [cellValue(row, column), index, row]);
  rows.sort(([x, i], [y, j]) => {
    if (x === null || y === null) return x === y ? i - j : x === null ? 1 : -1;
    const order = typeof x !== typeof y ? (typeof x === "number" ? -1 : 1) : x < y ? -1 : x > y ? 1 : i - j;
    return ascending ? order : -order;
  });
  rows.forEach(([, , row]) => body.appendChild(row));
}));
document.querySelectorAll("section.recording svg[data-seconds-per-pixel]").forEach((svg) =>
  svg.addEventListener("click", (event) => {
    const audio = svg.closest("section").querySelector("audio");
    const pixels = event.clientX - svg.getBoundingClientRect().left - Number(svg.dataset.left);
    if (audio && pixels >= 0) {
      audio.currentTime = pixels * Number(svg.dataset.secondsPerPixel);
      audio.play().catch(() => {});
    }
  }));
"""


def percent(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


def read_scores(layout, output: str, storage_options: dict | None, score: bool, rows: list) -> dict[str, dict]:
    """Per-recording scores: `eval/recordings.parquet` when a previous evaluate wrote it, else scored
    now (Ray tasks, `pipeline.scoring.evaluate`) when `score` and some row names a reference."""
    import pyarrow.parquet as pq

    path = layout.path("eval", "recordings.parquet")
    if layout.fs.exists(path):
        with layout.fs.open(path, "rb") as f:
            return {r["uniq_id"]: r for r in pq.read_table(f).to_pylist()}
    if score and any(row.rttm_filepath for row in rows):
        from pipeline.scoring.evaluate import evaluate_run

        per_recording, _ = evaluate_run(output, storage_options=storage_options)
        return {r["uniq_id"]: r for r in per_recording}
    return {}


def write_report(
    output: str,
    dest: str | None = None,
    storage_options: dict | None = None,
    score: bool = True,
    max_timelines: int = 200,
) -> str:
    """Writes the page for the run in `output` to `dest` (default `output/report.html`); returns its URI."""
    from pipeline.corpus.inputs import manifest_row
    from pipeline.corpus.outputs import OutputLayout
    from pipeline.errors import UsageError
    from pipeline.io.storage import filesystem, is_local, join
    from pipeline.scoring.metrics import load_reference

    layout = OutputLayout(output, storage_options)
    summary_path = layout.path("summary.json")
    if not layout.fs.exists(summary_path):
        raise UsageError(
            f"{output} holds no finished run (no summary.json); "
            f"run `python -m pipeline diarize --output {output}` first"
        )
    with layout.fs.open(summary_path, "r") as f:
        summary = json.load(f)
    dest = dest or join(output, "report.html")
    recordings = layout.read_table("recordings").to_pylist()
    from pipeline.export.formats import speaker_names
    from pipeline.linking.run import LINKS_FILE

    linked = layout.fs.exists(layout.path(LINKS_FILE))
    name_of = speaker_names(layout, global_ids=linked)  # after link-speakers: "speaker_0 = G0003"
    turns_of: dict[str, list[Turn]] = {}
    for row in layout.read_table("segments", ["uniq_id", "start", "end", "speaker"]).to_pylist():
        name = row["speaker"] + (f" = {name_of(row['uniq_id'], row['speaker'])}" if linked else "")
        turns_of.setdefault(row["uniq_id"], []).append(Turn(row["start"], row["end"], name))
    rows = [manifest_row(r) for r in recordings if r["status"] == "ok"]  # the input rows, as the run recorded them
    row_of = {row.uniq_id: row for row in rows}
    scores = read_scores(layout, output, storage_options, score, rows)

    ok = [r for r in recordings if r["status"] == "ok"]
    errors = [r for r in recordings if r["status"] != "ok"]
    config = summary.get("config", {})
    sections = [
        f"<h1>Diarization run: {html.escape(output)}</h1>",
        table(
            None,
            [
                ["input rows", summary.get("input_rows")],
                ["ok", summary.get("ok")],
                ["errors", summary.get("errors")],
                ["audio", f"{summary.get('audio_hours', 0):.2f} h ({summary.get('speech_hours', 0):.2f} h speech)"],
                [
                    "wall time",
                    f"{summary.get('wall_seconds', 0):.1f} s "
                    f"({summary.get('audio_seconds_per_wall_second', 0):.1f} audio s per wall s)",
                ],
                ["model", config.get("model")],
                ["manifests", ", ".join(config.get("manifests", []))],
                ["versions", ", ".join(f"{k} {v}" for k, v in summary.get("versions", {}).items())],
            ],
        ),
    ]

    sections.append(f"<h2>Errors ({len(errors)})</h2>")
    sections.append(
        table(
            ["manifest:line", "recording", "reason"],
            [[f"{r['manifest']}:{r['line_number']}", r["uniq_id"] or "", r["error"]] for r in errors],
        )
        if errors
        else "<p>No error rows.</p>"
    )

    if scores:
        ders = sorted(s["der"] for s in scores.values())
        total = sum(s["missed_speech_sec"] + s["false_alarm_sec"] + s["confusion_sec"] for s in scores.values())
        reference = sum(s["reference_speech_sec"] for s in scores.values())
        quantile = lambda q: ders[min(len(ders) - 1, int(q * len(ders)))]  # noqa: E731
        sections.append(f"<h2>DER over {len(ders)} scored recordings</h2>")
        sections.append(
            table(
                ["corpus DER", "best", "median", "90th percentile", "worst"],
                [
                    [
                        percent(total / reference if reference else 0.0),
                        percent(ders[0]),
                        percent(statistics.median(ders)),
                        percent(quantile(0.9)),
                        percent(ders[-1]),
                    ]
                ],
            )
        )

    def share(uid: str, key: str) -> str:  # a DER component as a share of the reference speech
        found = scores.get(uid)
        return percent(found[key] / found["reference_speech_sec"]) if found and found["reference_speech_sec"] else ""

    sections.append("<h2>Speakers per recording</h2>")
    sections.append(
        table(
            [
                "recording",
                "duration",
                "speakers found",
                "reference speakers",
                "DER",
                "missed speech",
                "false alarm",
                "confusion",
            ],
            [
                [
                    r["uniq_id"],
                    f"{r['duration']:.1f} s",
                    r["num_speakers"],
                    scores.get(r["uniq_id"], {}).get("reference_speakers", ""),
                    percent(scores[r["uniq_id"]]["der"]) if r["uniq_id"] in scores else "",
                    share(r["uniq_id"], "missed_speech_sec"),
                    share(r["uniq_id"], "false_alarm_sec"),
                    share(r["uniq_id"], "confusion_sec"),
                ]
                for r in sorted(ok, key=lambda r: r["uniq_id"])
            ],
        )
    )

    ordered = sorted(ok, key=lambda r: (-scores[r["uniq_id"]]["der"] if r["uniq_id"] in scores else 1.0, r["uniq_id"]))
    sections.append(f"<h2>Who spoke when{' (worst DER first)' if scores else ''}</h2>")
    report_folder = os.path.dirname(filesystem(dest, storage_options)[1]) if is_local(dest) else None
    for r in ordered[:max_timelines]:
        uid = r["uniq_id"]
        hypothesis = sorted(turns_of.get(uid, []), key=lambda t: t.start)
        row = row_of.get(uid)
        reference = load_reference(row, storage_options)[0] if row is not None and row.rttm_filepath else []
        ref_colours, hyp_colours = speaker_colours(reference, hypothesis)
        lanes = [("hyp", hypothesis, hyp_colours)] + ([("ref", reference, ref_colours)] if reference else [])
        duration = max([r["duration"] or 0.0, *(t.end - (row.offset if row else 0.0) for t in hypothesis)])
        title = f"{uid}" + (f" DER {percent(scores[uid]['der'])}" if uid in scores else "")
        sections.append(f'<section class="recording"><h3>{html.escape(title)}</h3>')
        sections.append(timeline_svg(duration + (row.offset if row else 0.0), lanes))
        spoken = sorted(speech_per_speaker(hypothesis).items(), key=lambda item: -item[1])
        sections.append(
            '<p class="speech">speech per speaker: '
            + ", ".join(f"{html.escape(speaker)} {seconds:.1f} s" for speaker, seconds in spoken)
            + "</p>"
        )
        audio = r["audio_filepath"] or ""
        if report_folder is not None and audio and is_local(audio):
            source = os.path.relpath(audio.removeprefix("file://"), report_folder)
            sections.append(f'<audio controls preload="none" src="{html.escape(source)}"></audio>')
        sections.append("</section>")
    if len(ordered) > max_timelines:
        sections.append(
            f"<p>{len(ordered) - max_timelines} more recordings not drawn (max_timelines={max_timelines}).</p>"
        )

    page = f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Diarization report</title><style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; background: #fff; }}
table {{ border-collapse: collapse; margin: 8px 0 16px; }} \
td, th {{ border: 1px solid #ddd; padding: 3px 8px; text-align: left; }}
th {{ background: #f0f4f8; }} .lane {{ font: 11px monospace; }} .tick {{ font: 10px sans-serif; fill: #555; }}
section.recording {{ margin-bottom: 18px; }} h3 {{ margin: 10px 0 4px; font-size: 14px; }}
table.sortable th {{ cursor: pointer; }} th[aria-sort="ascending"]::after {{ content: " \\25B2"; }}
th[aria-sort="descending"]::after {{ content: " \\25BC"; }} section.recording svg {{ cursor: pointer; }}
</style></head><body>{"".join(sections)}<script>{PAGE_SCRIPT}</script></body></html>"""
    fs, path = filesystem(dest, storage_options)
    fs.pipe_file(path, page.encode("utf-8"))
    return dest
