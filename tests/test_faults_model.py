"""A broken model stops the run; a bad file does not (pipeline/corpus/stages.py `DiarizeForward`).

The model is the energy plug-in of tests/plugin_models.py, run on the Ray workers by
`module:factory`, with options that make it fail on purpose: always (a model bug), on one recording
(a bad file), or out of memory above a batch size (retried in halves)."""

from __future__ import annotations

import re
import time

import pyarrow.parquet as pq
import pytest
from conftest import ami_rows, with_absolute_paths, write_jsonl

from pipeline.errors import ModelKeepsFailing

PLUGIN_MODEL = "tests.plugin_models:energy_diarizer"
NAMES = ("trn01", "trn02", "trn03")


def sliced_manifest(folder, slices: int = 4, extra: list[dict] | None = None):
    """`slices` 5-second slices of each AMI excerpt of NAMES (distinct ids), plus `extra` rows."""
    rows = [
        {**with_absolute_paths(row), "offset": 5.0 * k, "duration": 5.0}
        for row in ami_rows(*NAMES)
        for k in range(slices)
    ]
    return write_jsonl(folder / "manifest.jsonl", rows + (extra or []))


def resources_all_free(ray, seconds: float = 30.0) -> bool:
    """Whether every CPU of the session's Ray is free again within `seconds` (an actor ends asynchronously)."""
    deadline = time.monotonic() + seconds
    while ray.available_resources().get("CPU") != ray.cluster_resources().get("CPU"):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def recordings(output):
    return pq.read_table(output / "recordings").to_pylist() if (output / "recordings").exists() else []


def test_a_model_that_always_fails_stops_the_run_and_records_none_of_its_rows(local_ray, tmp_path):
    import pipeline

    manifest = sliced_manifest(tmp_path)
    output = tmp_path / "output"
    with pytest.raises(ModelKeepsFailing) as stopped:
        pipeline.run_corpus(
            str(manifest), str(output), model=PLUGIN_MODEL, model_kwargs={"fail": "always"}, batch_size=4
        )
    message = str(stopped.value)
    assert "\n" not in message and stopped.value.exit_code == 1
    assert re.search(
        r"the model failed on every recording of \d+ batches in a row \(\d+ recordings\), always with: "
        r"model forward failed: "
        r"RuntimeError: energy model is broken: weights have the wrong shape; stopping the run",
        message,
    )
    assert not [r for r in recordings(output) if "model forward failed" in (r["error"] or "")], (
        "rows the broken model failed are not recorded as error rows"
    )
    # The error is still held (as a notebook holds the last one): the model actor must not keep its CPU
    # until a garbage collection, or the next run in this session waits for it (ray-project/ray#24948).
    assert resources_all_free(local_ray), f"the stopped run's model actor holds {local_ray.available_resources()}"

    summary = pipeline.run_corpus(str(manifest), str(output), model=PLUGIN_MODEL, batch_size=4, resume=True)
    assert (summary["input_rows"], summary["recorded_rows"], summary["ok"], summary["errors"]) == (12, 12, 12, 0)
    assert len({r["uniq_id"] for r in recordings(output)}) == 12


@pytest.mark.parametrize("batch_size", [1, 3])
def test_one_bad_file_is_one_error_row_and_the_run_goes_on(local_ray, tmp_path, batch_size):
    import pipeline

    extra = [{"audio_filepath": str(tmp_path / "missing.wav")}]
    manifest = sliced_manifest(tmp_path, slices=1, extra=extra)
    output = tmp_path / "output"
    summary = pipeline.run_corpus(
        str(manifest), str(output), model=PLUGIN_MODEL, model_kwargs={"fail_on": "trn02"}, batch_size=batch_size
    )

    rows = {r["uniq_id"]: r for r in recordings(output)}
    assert sorted(rows) == ["missing", "trn01", "trn02", "trn03"]
    assert [rows[name]["status"] for name in NAMES] == ["ok", "error", "ok"]
    assert rows["trn02"]["error"] == "model forward failed: cannot handle trn02"
    assert (summary["ok"], summary["errors"]) == (2, 2)
    assert summary["errors_by_reason"] == {
        "model forward failed: cannot handle trnN": 1,
        "audio file not found: <file>": 1,
    }


def test_out_of_memory_is_retried_in_smaller_batches(local_ray, tmp_path):
    import pipeline

    manifest = sliced_manifest(tmp_path)  # 12 rows
    batch_log = tmp_path / "batches.txt"
    output = tmp_path / "output"
    summary = pipeline.run_corpus(
        str(manifest),
        str(output),
        model=PLUGIN_MODEL,
        batch_size=4,
        model_kwargs={"oom_above": 1, "batch_log": str(batch_log)},
    )

    assert (summary["ok"], summary["errors"]) == (12, 0)
    sizes = [int(line) for line in batch_log.read_text().split()]
    assert sizes[0] > 1 and sizes.count(1) == 12, "every recording once at the size that fits"
    assert sizes == sorted(sizes, reverse=True), "halved on out of memory; later batches start at the size that worked"


def test_out_of_memory_at_every_batch_size_stops_the_run(local_ray, tmp_path):
    import pipeline

    manifest = sliced_manifest(tmp_path)
    with pytest.raises(
        ModelKeepsFailing,
        match="always with: model forward failed: out of memory even alone: OutOfMemoryError: CUDA out of memory",
    ):
        pipeline.run_corpus(
            str(manifest), str(tmp_path / "output"), model=PLUGIN_MODEL, batch_size=4, model_kwargs={"oom_above": 0}
        )


def test_a_forward_that_breaks_the_contract_is_each_recording_s_error_in_words():
    """`_diarize_forward` gives one item per recording: a model that gives one fewer fails each of the
    batch's recordings (tried alone, it still gives none), saying what the contract asks; the whole
    batch failing alike is a broken model's (deferred: recorded at the end, or the run stops). The
    model actor's class, run in the test's process."""
    import numpy as np

    from pipeline.corpus.stages import DiarizeForward
    from pipeline.io.audio import decode_audio

    actor = DiarizeForward(PLUGIN_MODEL, use_gpu=False, threads=1, model_kwargs={"fail": "one_item_short"})
    audio = decode_audio(with_absolute_paths(ami_rows("trn01")[0])["audio_filepath"], 0.0, 5.0)
    batch = {
        "uniq_id": np.array(["a", "b"]),
        "audio": np.array([audio, audio], dtype=object),
        "audio_seconds": np.array([5.0, 5.0]),
        "offset": np.zeros(2),
        "num_speakers": np.zeros(2, dtype=np.int64),
        "status": np.array(["ok", "ok"]),
        "error": np.array(["", ""], dtype=object),
    }
    out = actor(batch)
    assert list(out["status"]) == ["deferred", "deferred"]
    assert set(out["error"]) == {
        "model forward failed: RuntimeError: _diarize_forward returned 0 items for a batch of 1 recording "
        "(one per recording is the contract)"
    }
