"""A run's speaker turns in the formats labelling and ASR tools read, one file per recording.

    json      one document per recording: id, audio, duration, speakers, segments [start, end, speaker]
    csv       start,end,duration,speaker (one row per turn)
    eaf       ELAN: one tier per speaker, the audio linked (pympi-ling)
    textgrid  Praat: one interval tier per speaker (praatio)
    audacity  Audacity label track: start<TAB>end<TAB>speaker
    vtt, srt  subtitles with the speaker as the cue text (webvtt-py)

`to_annotation(segments)` turns segments (a DataFrame or table of the `segments` table, dicts, `Turn`s
or NeMo's `"begin end speaker"` strings) into a pyannote.core `Annotation`."""

from __future__ import annotations

import csv
import json
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
FORMATS = tuple(EXTENSIONS)


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


WRITERS: dict[str, Callable[[dict, list[Turn], str], None]] = {
    "json": write_json,
    "csv": write_csv,
    "eaf": write_eaf,
    "textgrid": write_textgrid,
    "audacity": write_audacity,
    "vtt": write_vtt,
    "srt": write_srt,
}


def export_run(output: str, format: str, dest: str | None = None, storage_options: dict | None = None) -> list[str]:
    """Writes one `format` file per ok recording of the run in `output` to `dest` (default
    `output/export/<format>`, any fsspec URI); returns the files' URIs."""
    from pipeline.corpus.outputs import OutputLayout
    from pipeline.errors import UsageError
    from pipeline.io.storage import filesystem, join

    if format not in WRITERS:
        raise UsageError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    layout = OutputLayout(output, storage_options)
    if not layout.part_tokens("recordings"):
        raise UsageError(
            f"{output} holds no run (no recordings/ table); run `python -m pipeline diarize --output {output}` first"
        )
    dest = dest or join(output, "export", format)
    fs, root = filesystem(dest, storage_options)
    fs.makedirs(root, exist_ok=True)
    recordings = [r for r in layout.read_table("recordings").to_pylist() if r["status"] == "ok"]
    turns_of: dict[str, list[Turn]] = {}
    for row in layout.read_table("segments", ["uniq_id", "start", "end", "speaker"]).to_pylist():
        turns_of.setdefault(row["uniq_id"], []).append(Turn(row["start"], row["end"], row["speaker"]))
    written = []
    with tempfile.TemporaryDirectory() as scratch:  # the libraries write to paths; fsspec then puts the bytes anywhere
        for recording in sorted(recordings, key=lambda r: r["uniq_id"]):
            name = f"{recording['uniq_id']}.{EXTENSIONS[format]}"
            local = os.path.join(scratch, name)
            WRITERS[format](
                recording, sorted(turns_of.get(recording["uniq_id"], []), key=lambda t: (t.start, t.end)), local
            )
            with open(local, "rb") as f:
                fs.pipe_file(f"{root.rstrip('/')}/{name}", f.read())
            written.append(join(dest, name))
    return written
