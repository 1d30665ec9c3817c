"""Bring-your-own models (pipeline/models/registry.py): a model defined outside the package, the
energy model of tests/plugin_models.py, runs through `diarize()` and on Ray workers, named by
`module:factory` or installed as an entry point of `corpus_diarization.models`, with options
(`--model-arg`, `model_kwargs`) and a checkpoint (`--checkpoint`, passed as `checkpoint=`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import AMI, REPO, ami_rows, segments_by_recording, with_absolute_paths, write_jsonl

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


def test_an_installed_plugin_is_listed_and_loaded_by_name(tmp_path, monkeypatch):
    from pipeline.models import available_models, load_model

    install_plugin(tmp_path / "site")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert "energy" in available_models()
    segments = load_model("energy", threshold_db=-40.0).diarize([str(AMI / f"{n}.wav") for n in NAMES])
    assert {n: list(s) for n, s in zip(NAMES, segments) if s} == in_process(threshold_db=-40.0)


@pytest.mark.slow
def test_an_installed_plugin_runs_on_ray_workers_from_the_cli(tmp_path):
    """A fresh CLI process and its own local Ray: the plug-in is installed (on PYTHONPATH) where the
    driver and the workers run, and nowhere registered by code."""
    site = tmp_path / "site"
    install_plugin(site)
    manifest = write_jsonl(tmp_path / "manifest.jsonl", [with_absolute_paths(r) for r in ami_rows(*NAMES)])
    output = tmp_path / "output"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO)])
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "diarize",
            "--manifest",
            str(manifest),
            "--output",
            str(output),
            "--model",
            "energy",
            "--model-arg",
            "threshold_db=-40",
            "--batch-size",
            "2",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads((output / "summary.json").read_text())
    assert (summary["ok"], summary["errors"], summary["config"]["model_kwargs"]) == (3, 0, {"threshold_db": -40})
    assert segments_by_recording(pq.read_table(output / "segments")) == in_process(threshold_db=-40.0)


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
