"""Paths and shared, cached objects for tests (real data from ../shared/data, real weights)."""

from functools import lru_cache
from pathlib import Path

import psutil
import torch
from conftest import TEST_THREADS

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
AMI = DATA / "ami-excerpts"
LIBRISPEECH = DATA / "librispeech-train-clean-100"
FAR_FIELD_YAML = REPO / "pipeline" / "conf" / "far_field.yaml"


@lru_cache(maxsize=1)
def cpu_model():
    """The default (overlap-aware) model on CPU."""
    from pipeline import load_model

    torch.set_num_threads(TEST_THREADS)  # silero_vad's import sets 1 for the whole process
    model = load_model("default", device="cpu")
    _LOADED_CONFIGS[id(model)] = model.config
    return model


@lru_cache(maxsize=1)
def ge2e_model():
    """The light GE2E model (Silero VAD + GE2E + NME-SC) on CPU."""
    from pipeline import load_model

    torch.set_num_threads(TEST_THREADS)  # silero_vad's import sets 1 for the whole process
    model = load_model("ge2e", device="cpu")
    _LOADED_CONFIGS[id(model)] = model.config
    return model


def shared_models_changed() -> list[str]:
    """The session's cached models whose config a test replaced (put back as loaded, so that only
    that test fails): the next test to use one would run another model, and an accuracy figure
    would depend on the order the tests ran in."""
    changed = []
    for cached in (cpu_model, ge2e_model):
        if cached.cache_info().currsize:
            model = cached()
            loaded = _LOADED_CONFIGS.setdefault(id(model), model.config)
            if model.config is not loaded:
                changed.append(cached.__name__)
                model.config = loaded
    return changed


_LOADED_CONFIGS: dict[int, object] = {}


def ray_descendants(pid: int) -> list[psutil.Process]:
    found = []
    for process in psutil.Process(pid).children(recursive=True):
        try:
            command = " ".join(process.cmdline())
        except psutil.Error:
            continue
        if "ray" in command:
            found.append(process)
    return found


def still_running(processes) -> list[str]:
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(" ".join(process.cmdline())[:80])
        except psutil.Error:
            continue
    return alive


def encode_with_ffmpeg(samples, path, container: str, codec: str, rate: int, channels: int = 1) -> Path:
    """`samples` (16 kHz mono float32) written as `codec` in `container` through FFmpeg's libraries
    (PyAV): the M4A/AAC and WebM/Opus files that libsndfile does not read. A stereo file carries the
    speech in its left channel and silence in its right."""
    import av
    import numpy as np

    planes = np.stack([samples] + [np.zeros_like(samples)] * (channels - 1)).astype(np.float32)
    layout = "mono" if channels == 1 else "stereo"
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout=layout, rate=rate)
        frame = av.AudioFrame.from_ndarray(planes, format="fltp", layout=layout)
        frame.sample_rate = 16_000
        for converted in [*resampler.resample(frame), *resampler.resample(None)]:
            out.mux(stream.encode(converted))
        out.mux(stream.encode(None))
    return Path(path)


def install_plugin(site: Path) -> None:
    """A real installed distribution in `site`: the plug-in's module and a dist-info whose
    entry_points.txt registers it in the `corpus_diarization.models` group."""
    package = site / "energy_plugin"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text((REPO / "tests" / "plugin_models.py").read_text())
    info = site / "energy_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: energy-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[corpus_diarization.models]\nenergy = energy_plugin:energy_diarizer\n")
    (info / "RECORD").write_text("")
