"""Bring-your-own models (pipeline/models/registry.py): a model defined outside the package, the
energy model of tests/plugin_models.py, runs through `diarize()` and on Ray workers, named by
`module:factory` or installed as an entry point of `corpus_diarization.models`, with options
(`--model-arg`, `model_kwargs`) and a checkpoint (`--checkpoint`, passed as `checkpoint=`). An installed
plug-in on the workers of a CLI's own Ray: test_faults_secrets.py, whose CLI run it shares."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from conftest import AMI, ami_rows, segments_by_recording, with_absolute_paths, write_jsonl
from helpers import install_plugin

PLUGIN_MODEL = "tests.plugin_models:energy_diarizer"
NAMES = ("trn01", "trn02", "trn03")


def in_process(threshold_db: float | None = None) -> dict[str, list[str]]:
    """What the plug-in gives through NeMo's `diarize()` in this process."""
    from pipeline import load_model

    options = {} if threshold_db is None else {"threshold_db": threshold_db}
    model = load_model(PLUGIN_MODEL, **options)
    segments = model.diarize([str(AMI / f"{name}.wav") for name in NAMES], num_workers=0)
    return {name: list(s) for name, s in zip(NAMES, segments) if s}


def test_a_plugin_model_works_through_diarize_with_options_and_a_checkpoint(tmp_path):
    from pipeline import load_model

    default = in_process()
    assert set(default) == set(NAMES) and all(
        line.endswith(" speaker_0") for lines in default.values() for line in lines
    )
    stricter = in_process(threshold_db=-40.0)
    assert stricter != default, "the option reaches the factory"
    checkpoint = tmp_path / "energy.json"
    checkpoint.write_text(json.dumps({"threshold_db": -40.0}))
    from_checkpoint = load_model(PLUGIN_MODEL, checkpoint=str(checkpoint)).diarize(
        [str(AMI / f"{n}.wav") for n in NAMES]
    )
    assert {n: list(s) for n, s in zip(NAMES, from_checkpoint) if s} == stricter


def test_a_plugin_model_by_module_factory_runs_on_ray_workers_with_its_options(local_ray, tmp_path):
    import pipeline

    manifest = write_jsonl(tmp_path / "manifest.jsonl", [with_absolute_paths(r) for r in ami_rows(*NAMES)])
    checkpoint = tmp_path / "energy.json"
    checkpoint.write_text(json.dumps({"threshold_db": -40.0}))
    output = tmp_path / "output"
    summary = pipeline.run_corpus(
        str(manifest), str(output), model=PLUGIN_MODEL, checkpoint=str(checkpoint), batch_size=2
    )

    assert (summary["ok"], summary["errors"]) == (3, 0)
    assert (summary["config"]["model_kwargs"], summary["config"]["checkpoint"]) == ({}, str(checkpoint))
    assert segments_by_recording(pq.read_table(output / "segments")) == in_process(threshold_db=-40.0)
    assert set(pq.read_table(output / "recordings").column("model").to_pylist()) == {PLUGIN_MODEL}


def test_an_installed_plugin_is_listed_and_loaded_by_name(tmp_path, monkeypatch):
    from pipeline.models import available_models, load_model

    install_plugin(tmp_path / "site")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert "energy" in available_models()
    segments = load_model("energy", threshold_db=-40.0).diarize([str(AMI / f"{n}.wav") for n in NAMES])
    assert {n: list(s) for n, s in zip(NAMES, segments) if s} == in_process(threshold_db=-40.0)


def test_model_args_from_the_command_line_are_json_or_text():
    from pipeline.cli import build_parser
    from pipeline.corpus.options import RunOptions

    args = build_parser().parse_args(
        [
            "diarize",
            "--manifest",
            "m",
            "--output",
            "o",
            "--model-arg",
            "threshold_db=-40",
            "--model-arg",
            "name=far field",
            "--model-arg",
            "flags=[1, 2]",
            "--checkpoint",
            "s3://b/w.pt",
        ]
    )
    run = RunOptions.from_args(args)
    assert run.model_kwargs == {"threshold_db": -40, "name": "far field", "flags": [1, 2]}
    assert run.checkpoint == "s3://b/w.pt"
    assert run.factory_kwargs == {**run.model_kwargs, "checkpoint": "s3://b/w.pt"}
    with pytest.raises(SystemExit):
        build_parser().parse_args(["diarize", "--manifest", "m", "--output", "o", "--model-arg", "novalue"])
