"""Locate pretrained weights that ship inside installed PyPI packages, without importing them.

Importing `silero_vad` sets torch to one thread process-wide and importing `resemblyzer` pulls in
librosa and webrtcvad; the files are all we need."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the package {package!r} (which ships the weights) is not installed")
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed {package!r} package")
    return path
