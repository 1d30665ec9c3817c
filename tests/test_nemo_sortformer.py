"""`--model nemo --checkpoint PATH|URI.nemo`: a NeMo Sortformer checkpoint restored with NeMo's own
classes, its batch run by its own modules on the model actors, its own output processing. The `.nemo`
is a small random-weight Sortformer saved with NeMo's `save_to` (`benchmarks/nemo_adapter.py`); NeMo's
own `diarize()` on each file (a batch of one: NeMo scales a batch by its loudest sample, so its
larger batches depend on their neighbours) gives the reference turns."""

from __future__ import annotations

import io
import tarfile

import pyarrow.parquet as pq
import pytest
from conftest import AMI, ami_rows, segments_by_recording, skip_without, with_absolute_paths, write_jsonl

skip_without("nemo", "nemo")

from benchmarks.nemo_adapter import nemo_diarize, write_tiny_sortformer  # noqa: E402

NAMES = ("trñ00", "trn03", "trn04")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_tiny_sortformer(tmp_path_factory.mktemp("nemo") / "tiny_sortformer.nemo")


@pytest.fixture(scope="module")
def reference(checkpoint) -> dict[str, list[str]]:
    from nemo.collections.asr.models import SortformerEncLabelModel

    model = SortformerEncLabelModel.restore_from(str(checkpoint), map_location="cpu").eval()
    turns = {name: nemo_diarize(model, [str(AMI / f"{name}.wav")])[0] for name in NAMES}
    assert all(turns.values()) and any(len({s.split()[2] for s in t}) >= 2 for t in turns.values()), "can tell"
    return turns


def test_diarize_and_the_legacy_mixin_give_nemo_s_own_turns_with_recordings_batched_together(checkpoint, reference):
    from pipeline import load_model
    from pipeline.api import DiarizationMixin

    model = load_model("nemo", device="cpu", checkpoint=str(checkpoint))
    paths = [str(AMI / f"{name}.wav") for name in NAMES]
    segments, activity = model.diarize(paths, batch_size=3, num_workers=0, include_tensor_outputs=True)
    assert {name: sorted(s) for name, s in zip(NAMES, segments)} == reference
    assert all(a.shape[0] == 1 and a.shape[2] == 4 and abs(a.shape[1] * 0.08 - 30.0) < 0.2 for a in activity)
    legacy = DiarizationMixin.diarize(model, paths, batch_size=2)
    assert [sorted(s) for s in legacy] == [reference[name] for name in NAMES]


def test_a_streaming_checkpoint_gives_nemo_s_own_turns_whatever_the_lengths_beside_it(tmp_path):
    """A streaming Sortformer (v2.x: chunks, speaker cache, FIFO) through its own `forward_streaming`,
    three recordings of different lengths in one batch."""
    import soundfile as sf
    from nemo.collections.asr.models import SortformerEncLabelModel

    from pipeline import load_model

    checkpoint = write_tiny_sortformer(tmp_path / "streaming.nemo", streaming=True)
    paths = []
    for name, seconds in zip(NAMES, (30.0, 20.0, 12.5)):
        audio, sample_rate = sf.read(AMI / f"{name}.wav", dtype="float32")
        paths.append(str(tmp_path / f"{name}.wav"))
        sf.write(paths[-1], audio[: int(seconds * sample_rate)], sample_rate)
    nemo = SortformerEncLabelModel.restore_from(str(checkpoint), map_location="cpu").eval()
    expected = [nemo_diarize(nemo, [path])[0] for path in paths]
    model = load_model("nemo", device="cpu", checkpoint=str(checkpoint))
    assert model.streaming
    assert [sorted(s) for s in model.diarize(paths, batch_size=3, num_workers=0)] == expected


@pytest.mark.slow
def test_a_corpus_run_on_ray_gives_nemo_s_own_turns(local_ray, checkpoint, reference, tmp_path):
    import pipeline

    manifest = write_jsonl(tmp_path / "manifest.jsonl", [with_absolute_paths(r) for r in ami_rows(*NAMES)])
    summary = pipeline.run_corpus(
        str(manifest), str(tmp_path / "output"), model="nemo", checkpoint=str(checkpoint), batch_size=2
    )
    assert (summary["ok"], summary["errors"]) == (3, 0)
    written = segments_by_recording(pq.read_table(tmp_path / "output" / "segments"))
    assert {name: sorted(s) for name, s in written.items()} == reference


def another_kind_of_nemo(folder):
    """A `.nemo` whose config names another model class (an ASR model)."""
    path = folder / "asr.nemo"
    config = b"target: nemo.collections.asr.models.ctc_bpe_models.EncDecCTCModelBPE\n"
    with tarfile.open(path, "w") as archive:
        member = tarfile.TarInfo("./model_config.yaml")
        member.size = len(config)
        archive.addfile(member, io.BytesIO(config))
    return path


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda folder: None, ["--model nemo needs --checkpoint"]),
        (lambda folder: folder / "missing.nemo", ["checkpoint not found"]),
        (lambda folder: (folder / "w.nemo").write_bytes(b"not a tar") and folder / "w.nemo", ["not a .nemo archive"]),
        (another_kind_of_nemo, ["holds a EncDecCTCModelBPE, not a Sortformer diarizer"]),
        (lambda folder: (folder / "config.yaml").write_text("pipeline: {}\n") and folder, ["use --model pyannote"]),
    ],
    ids=["no checkpoint", "missing", "not a tar", "an ASR model", "a pyannote folder"],
)
def test_a_wrong_checkpoint_is_one_line_before_ray_starts(tmp_path, make, words):
    from test_cli_console import assert_checkpoint_refused

    assert_checkpoint_refused(tmp_path, "nemo", make, words)
