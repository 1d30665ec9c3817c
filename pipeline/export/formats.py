"""A run's speaker turns in the formats labelling and ASR tools read, one file per recording.

    json      one document per recording: id, audio, duration, speakers, segments [start, end, speaker]
    csv       start,end,duration,speaker (one row per turn)
    eaf       ELAN: one tier per speaker, the audio linked (pympi-ling)
    textgrid  Praat: one interval tier per speaker (praatio)
    audacity  Audacity label track: start<TAB>end<TAB>speaker
    vtt, srt  subtitles with the speaker as the cue text (webvtt-py)
    nemo-manifest  one NeMo manifest for the whole run, a line per single-speaker segment (overlap
              left out, `--min-segment-seconds` .. `--max-segment-seconds`): the training manifest
              of an ASR / TTS / speaker-recognition corpus

`export_run(output, "csv,json")` writes several at once (`"all"`: every format); `global_ids=True`
names speakers by the ids `link-speakers` gave (the same voice, one name across recordings).
`to_annotation(segments)` turns segments (a DataFrame or table of the `segments` table, dicts, `Turn`s
or NeMo's `"begin end speaker"` strings) into a pyannote.core `Annotation`."""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from typing import Any, Callable, Iterable

from pipeline.io.rttm import Turn, parse_segment

EXTENSIONS = {
    "json": "json",
    "csv": "csv",
    "eaf": "eaf",
    "textgrid": "TextGrid",
    "audacity": "txt",
    "vtt": "vtt",
    "srt": "srt",
}
NEMO_MANIFEST = "nemo-manifest"
FORMATS = (*EXTENSIONS, NEMO_MANIFEST)


def as_turns(segments: Any) -> list[Turn]:
    """Turns from any of the segment shapes the project hands out."""
    if hasattr(segments, "to_pylist"):  # pyarrow Table
        segments = segments.to_pylist()
    elif hasattr(segments, "to_dict"):  # pandas DataFrame
        segments = segments.to_dict("records")
    turns = []
    for item in segments:
        if isinstance(item, Turn):
            turns.append(item)
        elif isinstance(item, str):
            turns.append(parse_segment(item))
        elif isinstance(item, dict):
            turns.append(Turn(float(item["start"]), float(item["end"]), str(item["speaker"])))
        else:
            start, end, speaker = item
            turns.append(Turn(float(start), float(end), str(speaker)))
    return sorted(turns, key=lambda t: (t.start, t.end, t.speaker))


def to_annotation(segments: Any, uri: str | None = None):
    """A pyannote.core `Annotation` of `segments` (the uri defaults to the rows' `uniq_id` when given)."""
    from pyannote.core import Annotation, Segment

    if uri is None and hasattr(segments, "to_dict") and "uniq_id" in getattr(segments, "columns", []) and len(segments):
        uri = str(segments["uniq_id"].iloc[0])
    annotation = Annotation(uri=uri)
    for index, turn in enumerate(as_turns(segments)):
        annotation[Segment(turn.start, turn.end), index] = turn.speaker
    return annotation


def merged_by_speaker(turns: Iterable[Turn]) -> dict[str, list[tuple[float, float]]]:
    """Each speaker's turns with overlaps joined (tiers of ELAN and Praat may not overlap)."""
    spans: dict[str, list[tuple[float, float]]] = {}
    for turn in sorted(turns, key=lambda t: t.start):
        own = spans.setdefault(turn.speaker, [])
        if own and turn.start <= own[-1][1]:
            own[-1] = (own[-1][0], max(own[-1][1], turn.end))
        else:
            own.append((turn.start, turn.end))
    return dict(sorted(spans.items()))


# ---------------------------------------------------------------- writers: (recording, turns, path) -> None


def write_json(recording: dict, turns: list[Turn], path: str) -> None:
    document = {
        "uniq_id": recording["uniq_id"],
        "audio_filepath": recording["audio_filepath"],
        "duration": recording["duration"],
        "speakers": sorted({t.speaker for t in turns}),
        "segments": [{"start": t.start, "end": t.end, "speaker": t.speaker} for t in turns],
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump(document, f, ensure_ascii=False, indent=1)


def write_csv(recording: dict, turns: list[Turn], path: str) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["start", "end", "duration", "speaker"])
        writer.writerows([f"{t.start:.3f}", f"{t.end:.3f}", f"{t.duration:.3f}", t.speaker] for t in turns)


def write_audacity(recording: dict, turns: list[Turn], path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(f"{t.start:.6f}\t{t.end:.6f}\t{t.speaker}\n" for t in turns)


def write_eaf(recording: dict, turns: list[Turn], path: str) -> None:
    from pympi.Elan import Eaf, to_eaf

    eaf = Eaf(author="corpus-diarization")
    audio = recording["audio_filepath"] or ""
    if audio:
        eaf.add_linked_file(audio if "://" in audio else "file://" + os.path.abspath(audio), mimetype="audio/x-wav")
    for speaker, spans in merged_by_speaker(turns).items():
        eaf.add_tier(speaker)
        for start, end in spans:
            eaf.add_annotation(speaker, int(round(start * 1000)), int(round(end * 1000)), value=speaker)
    if len(eaf.tiers) > 1:
        eaf.remove_tier("default")
    to_eaf(path, eaf, pretty=True)


def write_textgrid(recording: dict, turns: list[Turn], path: str) -> None:
    from praatio import textgrid

    end = max([recording["duration"] or 0.0, *(t.end for t in turns)])
    grid = textgrid.Textgrid(minTimestamp=0.0, maxTimestamp=end)
    for speaker, spans in merged_by_speaker(turns).items():
        grid.addTier(textgrid.IntervalTier(speaker, [(s, e, speaker) for s, e in spans if e > s], 0.0, end))
    grid.save(path, format="long_textgrid", includeBlankSpaces=True)


def _captions(turns: list[Turn]):
    import webvtt

    def stamp(seconds: float) -> str:
        milliseconds = int(round(seconds * 1000))
        hours, rest = divmod(milliseconds, 3_600_000)
        minutes, rest = divmod(rest, 60_000)
        return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}.{rest % 1000:03d}"

    captions = webvtt.WebVTT()
    for turn in turns:
        captions.captions.append(webvtt.Caption(stamp(turn.start), stamp(turn.end), turn.speaker))
    return captions


def write_vtt(recording: dict, turns: list[Turn], path: str) -> None:
    _captions(turns).save(path)


def write_srt(recording: dict, turns: list[Turn], path: str) -> None:
    _captions(turns).save_as_srt(path)
    with open(path, "rb+") as f:  # webvtt-py leaves the last cue without its line end
        f.seek(0, os.SEEK_END)
        if f.tell() and (f.seek(-1, os.SEEK_END), f.read(1))[1] != b"\n":
            f.write(b"\n")


def single_speaker_spans(turns: list[Turn]) -> list[Turn]:
    """The stretches where exactly one speaker talks (overlapped speech left out), each as long as
    it runs."""
    from pipeline.postprocessing import elementary_intervals, merge_adjacent

    return merge_adjacent(
        Turn(start, end, speaking[0].speaker)
        for start, end, speaking in elementary_intervals(turns)
        if len({t.speaker for t in speaking}) == 1
    )


def training_segments(turns: list[Turn], min_seconds: float, max_seconds: float) -> list[Turn]:
    """Single-speaker spans of at least `min_seconds`, those over `max_seconds` cut into equal pieces."""
    pieces = []
    for span in single_speaker_spans(turns):
        if span.duration < min_seconds:
            continue
        count = max(1, math.ceil(span.duration / max_seconds - 1e-9))
        step = span.duration / count
        pieces.extend(Turn(span.start + k * step, span.start + (k + 1) * step, span.speaker) for k in range(count))
    return pieces


def nemo_manifest_lines(recording: dict, turns: list[Turn], min_seconds: float, max_seconds: float) -> str:
    """A NeMo manifest line per training segment: `audio_filepath, offset, duration` on the audio
    file, the speaker as `speaker` and NeMo speaker recognition's `label`."""
    lines = []
    for piece in training_segments(turns, min_seconds, max_seconds):
        record = {
            "audio_filepath": recording["audio_filepath"],
            "offset": round(piece.start, 3),
            "duration": round(piece.duration, 3),
            "speaker": piece.speaker,
            "label": piece.speaker,
            "uniq_id": recording["uniq_id"],
        }
        lines.append(json.dumps(record, ensure_ascii=False) + "\n")
    return "".join(lines)


WRITERS: dict[str, Callable[[dict, list[Turn], str], None]] = {
    "json": write_json,
    "csv": write_csv,
    "eaf": write_eaf,
    "textgrid": write_textgrid,
    "audacity": write_audacity,
    "vtt": write_vtt,
    "srt": write_srt,
}


def export_formats(formats: str | Iterable[str]) -> list[str]:
    """`"csv,json"`, `"all"` or a list of names -> the formats, checked."""
    names = [f.strip() for f in (formats.split(",") if isinstance(formats, str) else formats) if f.strip()]
    if names == ["all"]:
        return list(FORMATS)
    unknown = [name for name in names if name not in FORMATS]
    if unknown or not names:
        from pipeline.errors import UsageError

        raise UsageError(
            f"unknown export format {', '.join(unknown) or '(none)'}; choose from {', '.join(FORMATS)} or all"
        )
    return names


def speaker_names(layout, global_ids: bool) -> Callable[[str, str], str]:
    """(uniq_id, speaker) -> the name exports use: the run's own, or with `global_ids` the global id
    `link-speakers` gave (speakers it did not link: `unlinked/<uniq_id>/<speaker>`, as in `global_rttm/`)."""
    if not global_ids:
        return lambda uniq_id, speaker: speaker
    from pipeline.errors import UsageError
    from pipeline.linking.run import LINKS_FILE, read_previous, unlinked_label

    if not layout.fs.exists(layout.path(LINKS_FILE)):
        raise UsageError(
            f"{layout.uri} has no global speaker ids; "
            f"run `python -m pipeline link-speakers --output {layout.uri}` first"
        )
    links, _ = read_previous(layout)
    return lambda uniq_id, speaker: links.get((uniq_id, speaker)) or unlinked_label(uniq_id, speaker)


def export_run(
    output: str,
    format: str | Iterable[str],
    dest: str | None = None,
    storage_options: dict | None = None,
    global_ids: bool = False,
    min_segment_seconds: float = 1.0,
    max_segment_seconds: float = 20.0,
) -> list[str]:
    """Writes one file per ok recording of the run in `output` for each of `format` (a name,
    `"csv,json"`, `"all"`, or a list), to `dest/<format>` (default `output/export/<format>`, any
    fsspec URI); `nemo-manifest` is one `manifest.jsonl` for the run. Refuses an output a run is
    still writing. Returns the files' URIs."""
    from pipeline.console import Ticker
    from pipeline.corpus.lease import OutputLease
    from pipeline.corpus.outputs import OutputLayout
    from pipeline.errors import UsageError
    from pipeline.io.storage import filesystem, join

    formats = export_formats(format)
    if not 0 < min_segment_seconds <= max_segment_seconds:
        raise UsageError(
            f"--min-segment-seconds ({min_segment_seconds:g}) must be > 0 and at most --max-segment-seconds "
            f"({max_segment_seconds:g})"
        )
    layout = OutputLayout(output, storage_options)
    if not layout.part_tokens("recordings"):
        raise UsageError(
            f"{output} holds no run (no recordings/ table); run `python -m pipeline diarize --output {output}` first"
        )
    OutputLease(output, storage_options).refuse_if_held("export")
    name_of = speaker_names(layout, global_ids)
    recordings = sorted(
        (r for r in layout.read_table("recordings").to_pylist() if r["status"] == "ok"), key=lambda r: r["uniq_id"]
    )
    turns_of: dict[str, list[Turn]] = {}
    for row in layout.read_table("segments", ["uniq_id", "start", "end", "speaker"]).to_pylist():
        turns_of.setdefault(row["uniq_id"], []).append(
            Turn(row["start"], row["end"], name_of(row["uniq_id"], row["speaker"]))
        )
    for turns in turns_of.values():
        turns.sort(key=lambda t: (t.start, t.end))
    written = []
    for name in formats:
        folder = join(dest, name) if dest and len(formats) > 1 else dest or join(output, "export", name)
        fs, root = filesystem(folder, storage_options)
        fs.makedirs(root, exist_ok=True)
        if name == NEMO_MANIFEST:
            text = "".join(
                nemo_manifest_lines(r, turns_of.get(r["uniq_id"], []), min_segment_seconds, max_segment_seconds)
                for r in recordings
            )
            fs.pipe_file(f"{root.rstrip('/')}/manifest.jsonl", text.encode("utf-8"))
            written.append(join(folder, "manifest.jsonl"))
            continue
        ticker = Ticker(f"export {name}, files written:", len(recordings))
        with tempfile.TemporaryDirectory() as scratch:  # the libraries write to paths; fsspec puts the bytes anywhere
            for recording in recordings:
                file_name = f"{recording['uniq_id']}.{EXTENSIONS[name]}"
                local = os.path.join(scratch, file_name)
                WRITERS[name](recording, turns_of.get(recording["uniq_id"], []), local)
                with open(local, "rb") as f:
                    fs.pipe_file(f"{root.rstrip('/')}/{file_name}", f.read())
                written.append(join(folder, file_name))
                ticker.advance()
    return written
