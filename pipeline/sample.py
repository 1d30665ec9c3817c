"""The bundled default input of `make run`: the two-speaker `sample.wav` and its reference
`sample.rttm` that the `pyannote.audio` wheel ships, fetched from the package registry with
`pip download --no-deps` (pyannote.audio itself is never installed)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from pipeline.io.manifest import write_manifest

PYANNOTE_AUDIO_VERSION = "4.0.7"
_MEMBERS = {"sample.wav": "pyannote/audio/sample/sample.wav", "sample.rttm": "pyannote/audio/sample/sample.rttm"}


def fetch_sample(dest: str | Path) -> Path:
    """Write `sample.wav`, `sample.rttm` and a one-row `manifest.jsonl` into `dest`; returns the manifest."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if not all((dest / name).exists() for name in _MEMBERS):
        with tempfile.TemporaryDirectory() as download_dir:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--quiet",
                    "--dest",
                    download_dir,
                    f"pyannote.audio=={PYANNOTE_AUDIO_VERSION}",
                ],
                check=True,
            )
            wheel = next(Path(download_dir).glob("pyannote_audio-*.whl"))
            with zipfile.ZipFile(wheel) as archive:
                for name, member in _MEMBERS.items():
                    (dest / name).write_bytes(archive.read(member))
    manifest = dest / "manifest.jsonl"
    write_manifest(
        str(manifest),
        [
            {
                "audio_filepath": "sample.wav",
                "offset": 0.0,
                "duration": None,
                "label": "infer",
                "text": "-",
                "num_speakers": None,
                "rttm_filepath": "sample.rttm",
                "uem_filepath": None,
            }
        ],
    )
    return manifest
