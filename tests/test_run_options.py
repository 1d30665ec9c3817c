"""`RunOptions` is the one list of a run's options: the CLI's flags are made from it, and the
summary records all of it, secrets never."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest

from pipeline.cli import build_parser
from pipeline.corpus.options import RunOptions
from pipeline.errors import UsageError


def test_the_cli_flags_give_the_same_options_as_the_python_call():
    parser = build_parser()
    args = parser.parse_args(
        ["diarize", "--manifest", "a.jsonl", "b.jsonl", "--output", "out", "--batch-size", "8", "--num-actors", "1,4"]
        + ["--task-cpus", "0.5", "--model-arg", "step_seconds=10", "--endpoint-url", "http://x", "--limit", "3"]
    )
    assert RunOptions.from_args(args) == RunOptions(
        manifests=["a.jsonl", "b.jsonl"],
        output="out",
        batch_size=8,
        num_actors="1,4",
        task_cpus=0.5,
        model_kwargs={"step_seconds": 10},
        storage_options={"endpoint_url": "http://x"},
        limit=3,
    )
    defaults = RunOptions.from_args(parser.parse_args(["diarize", "--manifest", "m", "--output", "o"]))
    assert defaults == RunOptions(manifests="m", output="o"), "the CLI's defaults are the object's"


def test_the_summary_records_every_option_and_no_secret():
    run = RunOptions("m", "o", checkpoint="w.pt", storage_options={"endpoint_url": "http://x", "key": "s3cr3t"})
    summary = run.summary()
    assert set(summary) == {spec.name for spec in fields(RunOptions)}
    assert summary["storage_options"] == {"endpoint_url": "http://x"} and "s3cr3t" not in json.dumps(summary)
    assert summary["num_actors"] == [1, 1] and run.factory_kwargs == {"checkpoint": "w.pt"}


@pytest.mark.parametrize(
    "field, value, flag",
    [("batch_size", 0, "--batch-size"), ("task_cpus", 0, "--task-cpus"), ("num_actors", "4,1", "--num-actors")],
)
def test_a_bad_option_is_refused_by_its_flag_without_ray_or_weights(field, value, flag):
    with pytest.raises(UsageError, match=flag):
        RunOptions("m", "o", **{field: value}).check()
