"""A NeMo diarization manifest for audio that has none (`python -m pipeline manifest`).

The audio under folders, globs or single files (local or object storage), one row per file, with
its RTTM and UEM references paired by file name as NeMo's
`scripts/speaker_tasks/pathfiles_to_diarize_manifest.py` pairs them (`a/x.wav` with `refs/x.rttm`).
Rows are NeMo's: `offset` 0, `duration` null (to the end of the file), `label` "infer", `text` "-".
Torch-free, like the corpus driver (`pipeline.io.manifest.expand_manifests` refuses audio given as a
manifest and names this command)."""

from __future__ import annotations

import json
import posixpath
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import fsspec

from pipeline.console import still_working
from pipeline.errors import UsageError
from pipeline.io.manifest import (
    AUDIO_SUFFIXES,
    GLOB_CHARACTERS,
    MANIFEST_SUFFIXES,
    MAX_NUM_SPEAKERS,
    is_audio_name,
    speaker_count,
)
from pipeline.io.storage import filesystem, options_for


def listed(uris: str | Iterable[str]) -> list[str]:
    return [uris] if isinstance(uris, str) else list(uris)


def stem(path: str) -> str:
    """The name that pairs an audio file with its references: `x` for `.../x.wav` and `.../x.rttm`."""
    return posixpath.splitext(posixpath.basename(path.rstrip("/")))[0]


def list_files(
    uris: Iterable[str], keep, kind: str, options: dict | None = None, passed_over: Counter | None = None
) -> list[str]:
    """The files `uris` name, in order, each once: the files named, and a glob's matches and a folder's
    files (at any depth), for which `keep(name)` holds. Local paths come back absolute, object-store ones
    as full URIs. A URI that names nothing, or a named file that `keep` refuses, is a UsageError. The
    folders' other files are counted by suffix in `passed_over` when it is given."""
    found: dict[str, None] = {}
    for uri in uris:
        fs, path = filesystem(uri, options)
        if any(c in uri for c in GLOB_CHARACTERS):
            with still_working(f"listing {uri}"):
                matches = [m for m in fs.glob(path) if keep(m) and not fs.isdir(m)]
        elif fs.isdir(path):
            with still_working(f"listing {uri}"):  # a bucket's million objects: a thousand requests
                listing = fs.find(path)
            matches = [m for m in listing if keep(m)]
            if passed_over is not None:
                passed_over.update(posixpath.splitext(m)[1].lower() for m in listing if not keep(m))
        elif fs.exists(path):
            if not keep(path):  # a shell's unquoted `--rttm refs/*.rttm` leaves RTTMs among the audio
                raise UsageError(f"{uri} is not {kind}")
            matches = [path]
        else:
            raise UsageError(f"not found: {uri}")
        if not matches:
            raise UsageError(f"no {kind} in {uri}")
        for match in sorted(matches):
            found[posixpath.abspath(match) if "://" not in uri else fs.unstrip_protocol(match)] = None
    return list(found)


def by_stem(paths: list[str], kind: str, flag: str) -> dict[str, str]:
    """{stem: path}; two references of one name cannot be told apart, so that is a UsageError."""
    paired: dict[str, str] = {}
    for path in paths:
        name = stem(path)
        if name in paired:
            raise UsageError(f"two {kind} files are named {name!r} ({paired[name]}, {path}): {flag} can pair only one")
        paired[name] = path
    return paired


@dataclass
class AudioManifest:
    """The audio found, each file's name, and the references by name: rows are made as they are
    written, so a million files cost their paths, not a million dicts."""

    audio: list[str]
    stems: list[str]
    rttm: dict[str, str]
    uem: dict[str, str]
    num_speakers: int | None = None
    beside: dict[str, int] = field(default_factory=dict)  # references among the audio that no flag asked for

    def rows(self) -> Iterator[dict]:
        for path, name in zip(self.audio, self.stems):
            yield {
                "audio_filepath": path,
                "offset": 0.0,
                "duration": None,
                "label": "infer",
                "text": "-",
                "num_speakers": self.num_speakers,
                "rttm_filepath": self.rttm.get(name),
                "uem_filepath": self.uem.get(name),
            }

    def with_reference(self, kind: str) -> int:
        references = self.rttm if kind == "rttm" else self.uem
        return sum(1 for name in self.stems if name in references)

    def unpaired(self, kind: str) -> list[str]:
        """The references named after no audio file."""
        named = set(self.stems)
        return [path for name, path in (self.rttm if kind == "rttm" else self.uem).items() if name not in named]


def audio_manifest_rows(
    audio: Iterable[str],
    rttms: Iterable[str] = (),
    uems: Iterable[str] = (),
    num_speakers: int | None = None,
    options: dict | None = None,
) -> AudioManifest:
    audio, rttms, uems = listed(audio), listed(rttms), listed(uems)
    passed_over: Counter = Counter()
    audio_files = list_files(
        audio, is_audio_name, f"audio ({', '.join(AUDIO_SUFFIXES[:4])}, ...)", options, passed_over
    )
    rttm = by_stem(list_files(rttms, lambda p: p.lower().endswith(".rttm"), "RTTM (.rttm)", options), "RTTM", "--rttm")
    uem = by_stem(list_files(uems, lambda p: p.lower().endswith(".uem"), "UEM (.uem)", options), "UEM", "--uem")
    stems = [stem(path) for path in audio_files]
    shared = [name for name, count in Counter(stems).items() if count > 1 and (name in rttm or name in uem)]
    if shared:
        same = [path for path, name in zip(audio_files, stems) if name == shared[0]]
        raise UsageError(f"two audio files are named {shared[0]!r} ({same[0]}, {same[1]}): their reference fits both")
    # NeMo's script pairs only the references it is given; the ones lying beside the audio are named, not guessed
    beside = {kind: passed_over[f".{kind}"] for kind, given in (("rttm", rttms), ("uem", uems)) if not given}
    return AudioManifest(audio_files, stems, rttm, uem, num_speakers, {k: n for k, n in beside.items() if n})


def check_manifest_output(output: str, force: bool = False, options: dict | None = None) -> None:
    """Before any listing (a bucket's can take minutes): a manifest's name, and an existing manifest kept
    unless `force`, since a run's `--resume` refuses a manifest whose lines changed under it."""
    if not output.lower().endswith(MANIFEST_SUFFIXES):
        raise UsageError(f"--output {output}: a manifest is named *.jsonl (or *.jsonl.gz, *.jsonl.zst)")
    fs, path = filesystem(output, options)
    if fs.exists(path) and not force:
        raise UsageError(f"--output {output} exists: pass --force to replace it")


def write_audio_manifest(manifest: AudioManifest, output: str, options: dict | None = None) -> None:
    """JSON Lines, compressed as the name says (`.jsonl.gz`, `.jsonl.zst`)."""
    with fsspec.open(output, "wt", encoding="utf-8", compression="infer", **options_for(output, options)) as f:
        for row in manifest.rows():
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def manifest_for_audio(
    audio: str | Iterable[str],
    output: str,
    rttm: str | Iterable[str] = (),
    uem: str | Iterable[str] = (),
    num_speakers: int | None = None,
    force: bool = False,
    storage_options: dict | None = None,
) -> AudioManifest:
    """Write `output`, a NeMo manifest of the audio under `audio` (files, folders, globs), with the
    references under `rttm`/`uem` paired by name; what `python -m pipeline manifest` does."""
    try:  # the rule every run reads the field by
        num_speakers = speaker_count(num_speakers)
    except ValueError:
        raise UsageError(
            f"--num-speakers {num_speakers}: give a count of at least 1 and at most {MAX_NUM_SPEAKERS}, "
            "or leave it out to estimate"
        ) from None
    check_manifest_output(output, force, storage_options)
    manifest = audio_manifest_rows(listed(audio), listed(rttm), listed(uem), num_speakers, storage_options)
    write_audio_manifest(manifest, output, storage_options)
    return manifest
