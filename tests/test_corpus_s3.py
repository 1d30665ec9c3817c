"""s3:// in, s3:// out, through a real S3 API on loopback (moto's server)."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from conftest import AMI, FAST_MODEL, ami_rows, in_process_segments, segments_by_recording

NAMES = ("trñ00", "trn02", "trn03")


@pytest.fixture(scope="module")
def s3(s3_endpoint):
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint, skip_instance_cache=True)
    fs.mkdir("corpus")
    for row in ami_rows(*NAMES):
        fs.put_file(str(AMI / row["audio_filepath"]), f"corpus/ami/{row['audio_filepath']}")
    fs.pipe_file(
        "corpus/ami/manifest.jsonl",
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ami_rows(*NAMES)).encode(),
    )
    return fs


@pytest.mark.slow
def test_s3_manifest_glob_to_s3_output(local_ray, s3, s3_endpoint):
    import pipeline

    summary = pipeline.run_corpus(
        ["s3://corpus/ami/*.jsonl"],
        "s3://corpus/out",
        model=FAST_MODEL,  # the store is under test; the default model through Ray: test_corpus_local
        batch_size=2,
        storage_options={"endpoint_url": s3_endpoint},
    )
    assert (summary["ok"], summary["errors"]) == (3, 0)
    assert summary["config"]["storage_options"] == {"endpoint_url": s3_endpoint}

    s3.invalidate_cache()
    assert segments_by_recording(pq.read_table("corpus/out/segments", filesystem=s3)) == in_process_segments(
        *NAMES, model=FAST_MODEL
    )
    recordings = pq.read_table("corpus/out/recordings", filesystem=s3).to_pylist()
    assert sorted(r["audio_filepath"] for r in recordings) == sorted(f"s3://corpus/ami/{name}.wav" for name in NAMES)
    assert sorted(s3.ls("corpus/out/rttm")) == sorted(f"corpus/out/rttm/{name}.rttm" for name in NAMES)
    manifest = [json.loads(line) for line in s3.cat_file("corpus/out/manifest.jsonl").decode().splitlines()]
    assert [r["rttm_filepath"] for r in manifest] == [f"s3://corpus/out/rttm/{name}.rttm" for name in NAMES]
    assert "secret" not in s3.cat_file("corpus/out/summary.json").decode().lower()


@pytest.mark.slow
def test_every_id_case_is_its_own_literal_key_on_s3(local_ray, s3, s3_endpoint):
    from conftest import FAST_MODEL
    from test_corpus_scale import ID_CASES

    import pipeline

    rows = [{"audio_filepath": "trn03.wav", "duration": 4.0, "uniq_id": case} for case in ID_CASES]
    s3.pipe_file("corpus/ami/ids.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode())
    summary = pipeline.run_corpus(
        ["s3://corpus/ami/ids.jsonl"],
        "s3://corpus/ids-out",
        model=FAST_MODEL,
        batch_size=4,
        storage_options={"endpoint_url": s3_endpoint},
    )
    assert (summary["ok"], summary["errors"]) == (len(ID_CASES), 0)
    s3.invalidate_cache()
    ids = {r["uniq_id"] for r in pq.read_table("corpus/ids-out/recordings", filesystem=s3).to_pylist()}
    assert len(ids) == len(ID_CASES)
    assert sorted(s3.ls("corpus/ids-out/rttm")) == sorted(f"corpus/ids-out/rttm/{i}.rttm" for i in ids)
    for line in s3.cat_file("corpus/ids-out/manifest.jsonl").decode().splitlines():
        row = json.loads(line)
        text = s3.cat_file(row["rttm_filepath"]).decode()  # the key the manifest names exists, literally
        assert {fields.split()[1] for fields in text.splitlines()} == {row["uniq_id"]}
