"""Score a corpus run against the references its manifests name (`rttm_filepath`, `uem_filepath`).

Scoring runs as Ray tasks, a chunk of recordings each, so it scales with the corpus; the corpus
figures are sums of the per-recording components (DER seconds, JER speaker errors), exactly what
one pyannote.metrics accumulator over all recordings would give.
Writes `eval/recordings.parquet` (one row per scored recording) and `eval/summary.json`."""

from __future__ import annotations

import json
from typing import Iterable

import pyarrow as pa
import pyarrow.parquet as pq
import ray

from .rttm import Turn
from .scoring import ScoringItem, corpus_totals, load_reference, score_corpus

EVAL_SCHEMA = pa.schema([
    ("uniq_id", pa.string()),
    ("der", pa.float64()), ("missed_speech", pa.float64()), ("false_alarm", pa.float64()), ("confusion", pa.float64()),
    ("missed_speech_sec", pa.float64()), ("false_alarm_sec", pa.float64()), ("confusion_sec", pa.float64()),
    ("reference_speech_sec", pa.float64()), ("jer", pa.float64()),
    ("jer_speaker_count", pa.float64()), ("jer_speaker_error", pa.float64()),
    ("reference_speakers", pa.int64()), ("hypothesis_speakers", pa.int64()), ("speaker_count_error", pa.int64()),
])


@ray.remote(num_cpus=1)
def _score_chunk(rows: list, hypotheses: dict[str, list[Turn]], collar: float, skip_overlap: bool,
                 storage_options: dict | None) -> list[dict]:
    items = []
    for row in rows:
        reference, uem = load_reference(row, storage_options)
        items.append(ScoringItem(row.uniq_id, reference, hypotheses.get(row.uniq_id, []), uem))
    per_recording, _ = score_corpus(items, collar=collar, skip_overlap=skip_overlap)
    return [{"uniq_id": score.pop("uri"), **score} for score in per_recording]


def evaluate_run(
    output: str,
    manifests: Iterable[str] | None = None,
    collar: float = 0.25,
    skip_overlap: bool = False,
    storage_options: dict | None = None,
    chunk_size: int = 64,
    address: str | None = None,
) -> tuple[list[dict], dict]:
    """Per-recording and overall scores of the run in `output`. `manifests` default to the ones the
    run was given (its `summary.json`). Only ok recordings whose row names a reference are scored.
    Scoring runs on the Ray at `address`, else `RAY_ADDRESS` (set inside `ray job submit`), else a
    local Ray (`corpus.ray_session.connect_ray`, the same rule as `run_corpus`)."""
    from .corpus.inputs import recorded_manifest_rows
    from .corpus.outputs import OutputLayout
    from .corpus.preflight import check_collar
    from .corpus.ray_session import connect_ray

    collar = check_collar(collar)

    layout = OutputLayout(output, storage_options)
    if manifests is None:
        with layout.fs.open(layout.path("summary.json"), "r") as f:
            manifests = json.load(f)["config"]["manifests"]
    # The run's ids come from its records, matched to the manifests' rows by row key (`pipeline.ids`).
    recordings = layout.read_table("recordings", ["uniq_id", "status", "row_key", "manifest_row"]).to_pylist()
    rows = [row for row in recorded_manifest_rows(list(manifests), storage_options, recordings) if row.rttm_filepath]

    hypotheses: dict[str, list[Turn]] = {}
    for turn in layout.read_table("segments", ["uniq_id", "start", "end", "speaker"]).to_pylist():
        hypotheses.setdefault(turn["uniq_id"], []).append(Turn(turn["start"], turn["end"], turn["speaker"]))

    connect_ray(address, local_options={"include_dashboard": False}, log_to_driver=False)
    chunks = [rows[i : i + chunk_size] for i in range(0, len(rows), chunk_size)]
    futures = [
        _score_chunk.remote(chunk, {r.uniq_id: hypotheses.get(r.uniq_id, []) for r in chunk}, collar, skip_overlap, storage_options)
        for chunk in chunks
    ]
    per_recording = [score for chunk in ray.get(futures) for score in chunk]
    overall = corpus_totals(per_recording)
    overall.update({"collar": collar, "skip_overlap": skip_overlap, "manifests": list(manifests)})

    table = pa.Table.from_pylist([{k: r[k] for k in EVAL_SCHEMA.names} for r in per_recording], schema=EVAL_SCHEMA)
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer)
    layout.write_atomically(layout.path("eval", "recordings.parquet"), buffer.getvalue().to_pybytes())
    layout.write_atomically(layout.path("eval", "summary.json"), json.dumps(overall, indent=2).encode())
    return per_recording, overall


def format_table(per_recording: list[dict], overall: dict) -> str:
    header = f"{'recording':<24} {'DER':>7} {'miss':>7} {'FA':>7} {'conf':>7} {'JER':>7} {'spk ref/hyp':>12}"
    lines = [header, "-" * len(header)]
    for r in sorted(per_recording, key=lambda r: r["uniq_id"]):
        lines.append(
            f"{r['uniq_id'][:24]:<24} {r['der']:7.2%} {r['missed_speech']:7.2%} {r['false_alarm']:7.2%} "
            f"{r['confusion']:7.2%} {r['jer']:7.2%} {r['reference_speakers']:>5}/{r['hypothesis_speakers']:<6}"
        )
    lines.append("-" * len(header))
    lines.append(
        f"{'OVERALL (' + str(overall['recordings']) + ')':<24} {overall['der']:7.2%} {overall['missed_speech']:7.2%} "
        f"{overall['false_alarm']:7.2%} {overall['confusion']:7.2%} {overall['jer']:7.2%} "
        f"{'count acc ' + format(overall['speaker_count_accuracy'], '.0%'):>12}"
    )
    return "\n".join(lines)
