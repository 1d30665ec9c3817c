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

from pipeline.console import counted
from pipeline.corpus.progress import gather
from pipeline.errors import UsageError
from pipeline.io.rttm import Turn
from pipeline.scoring.metrics import ScoringItem, corpus_totals, load_reference, score_corpus

EVAL_SCHEMA = pa.schema(
    [
        ("uniq_id", pa.string()),
        ("der", pa.float64()),
        ("missed_speech", pa.float64()),
        ("false_alarm", pa.float64()),
        ("confusion", pa.float64()),
        ("missed_speech_sec", pa.float64()),
        ("false_alarm_sec", pa.float64()),
        ("confusion_sec", pa.float64()),
        ("reference_speech_sec", pa.float64()),
        ("jer", pa.float64()),
        ("jer_speaker_count", pa.float64()),
        ("jer_speaker_error", pa.float64()),
        ("reference_speakers", pa.int64()),
        ("hypothesis_speakers", pa.int64()),
        ("speaker_count_error", pa.int64()),
    ]
)


@ray.remote(num_cpus=1)
def _score_chunk(
    rows: list, hypotheses: dict[str, list[Turn]], collar: float, skip_overlap: bool, storage_options: dict | None
) -> tuple[list[dict], list[dict]]:
    """(scores, unscored): a row whose reference cannot be read (missing, not an RTTM) is left
    unscored with its reason, never scored as if its reference were empty."""
    items, unscored = [], []
    for row in rows:
        try:
            reference, uem = load_reference(row, storage_options)
        except (OSError, ValueError) as error:
            unscored.append({"uniq_id": row.uniq_id, "reason": f"{row.rttm_filepath}: {error}"[:300]})
            continue
        items.append(ScoringItem(row.uniq_id, reference, hypotheses.get(row.uniq_id, []), uem))
    per_recording, _ = score_corpus(items, collar=collar, skip_overlap=skip_overlap)
    return [{"uniq_id": score.pop("uri"), **score} for score in per_recording], unscored


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
    from pipeline.corpus.outputs import OutputLayout
    from pipeline.corpus.preflight import check_collar
    from pipeline.corpus.ray_session import connect_ray

    collar = check_collar(collar)

    layout = OutputLayout(output, storage_options)
    manifests, rows = scored_rows(layout, manifests, storage_options)

    hypotheses: dict[str, list[Turn]] = {}
    for turn in layout.read_table("segments", ["uniq_id", "start", "end", "speaker"]).to_pylist():
        hypotheses.setdefault(turn["uniq_id"], []).append(Turn(turn["start"], turn["end"], turn["speaker"]))

    connect_ray(address, local_options={"include_dashboard": False}, log_to_driver=False)
    chunks = [rows[i : i + chunk_size] for i in range(0, len(rows), chunk_size)]
    futures = [
        _score_chunk.remote(
            chunk, {r.uniq_id: hypotheses.get(r.uniq_id, []) for r in chunk}, collar, skip_overlap, storage_options
        )
        for chunk in chunks
    ]
    results = gather(futures, f"scoring {counted(len(rows), 'recording')}, chunks done:")
    per_recording = [score for scores, _ in results for score in scores]
    overall = corpus_totals(per_recording)
    overall.update(
        {
            "collar": collar,
            "skip_overlap": skip_overlap,
            "manifests": list(manifests),
            "unscored": [row for _, unscored in results for row in unscored],
        }
    )

    table = pa.Table.from_pylist([{k: r[k] for k in EVAL_SCHEMA.names} for r in per_recording], schema=EVAL_SCHEMA)
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer)
    layout.write_atomically(layout.path("eval", "recordings.parquet"), buffer.getvalue().to_pybytes())
    layout.write_atomically(layout.path("eval", "summary.json"), json.dumps(overall, indent=2).encode())
    return per_recording, overall


def scored_rows(layout, manifests: Iterable[str] | None, storage_options: dict | None):
    """The manifests (default: the run's, from its `summary.json`) and their rows that the run
    recorded as ok and that name a reference, under the run's ids (matched by row key, `pipeline.io.ids`)."""
    from pipeline.corpus.inputs import recorded_manifest_rows

    if not layout.part_tokens("recordings"):
        raise UsageError(f"{layout.uri} holds no corpus run (no recordings/): run `python -m pipeline diarize` first")
    if manifests is None:
        if not layout.fs.exists(layout.path("summary.json")):  # interrupted: its manifests are not written down yet
            raise UsageError(
                f"{layout.uri} has no summary.json (the run did not finish): finish it with `diarize --resume`, "
                "or score what it has with --manifest M.jsonl"
            )
        with layout.fs.open(layout.path("summary.json"), "r") as f:
            manifests = json.load(f)["config"]["manifests"]
    recordings = layout.read_table("recordings", ["uniq_id", "status", "row_key", "manifest_row"]).to_pylist()
    rows = [row for row in recorded_manifest_rows(list(manifests), storage_options, recordings) if row.rttm_filepath]
    return list(manifests), rows


# ------------------------------------------------------------------ --global: the linked speakers

GLOBAL_EVAL_SCHEMA = pa.schema(
    [
        ("uniq_id", pa.string()),
        ("der", pa.float64()),
        ("confusion_sec", pa.float64()),
        ("global_der", pa.float64()),
        ("global_missed_speech_sec", pa.float64()),
        ("global_false_alarm_sec", pa.float64()),
        ("global_confusion_sec", pa.float64()),
        ("reference_speech_sec", pa.float64()),
    ]
)


def _global_item(layout, row, storage_options: dict | None):
    """The recording's reference and its global RTTM as a `ScoringItem` (None when it has no global RTTM)."""
    from pipeline.io.rttm import parse_rttm, rttm_field
    from pipeline.linking.run import GLOBAL_RTTM

    path = layout.path(GLOBAL_RTTM, f"{row.uniq_id}.rttm")
    if not layout.fs.exists(path):
        return None
    with layout.fs.open(path, "rb") as f:
        hypothesis = parse_rttm(f.read().decode("utf-8")).get(rttm_field(row.uniq_id), [])
    reference, uem = load_reference(row, storage_options)
    return ScoringItem(row.uniq_id, reference, hypothesis, uem)


@ray.remote(num_cpus=1)
def _global_first_pass(
    rows: list, output: str, collar: float, skip_overlap: bool, storage_options: dict | None
) -> list[dict]:
    """Per recording: its DER with its own mapping, and its co-occurrence triples."""
    from pipeline.corpus.outputs import OutputLayout
    from pipeline.scoring.metrics import global_cooccurrence, score_recording

    layout = OutputLayout(output, storage_options)
    results = []
    for row in rows:
        item = _global_item(layout, row, storage_options)
        if item is None:
            results.append({"uniq_id": row.uniq_id, "missing": True})
            continue
        score = score_recording(item.reference, item.hypothesis, item.uem, collar, skip_overlap, uri=row.uniq_id)
        results.append(
            {
                "uniq_id": row.uniq_id,
                "missing": False,
                "score": score,
                "cooccurrence": global_cooccurrence(item, collar, skip_overlap),
            }
        )
    return results


@ray.remote(num_cpus=1)
def _global_second_pass(
    rows: list, output: str, mapping: dict, collar: float, skip_overlap: bool, storage_options: dict | None
) -> list[dict]:
    """Per recording: its errors under the corpus-wide mapping."""
    from pipeline.corpus.outputs import OutputLayout
    from pipeline.scoring.metrics import mapped_components

    layout = OutputLayout(output, storage_options)
    return [
        mapped_components(_global_item(layout, row, storage_options), mapping, collar, skip_overlap) for row in rows
    ]


def evaluate_global_run(
    output: str,
    manifests: Iterable[str] | None = None,
    collar: float = 0.25,
    skip_overlap: bool = False,
    storage_options: dict | None = None,
    chunk_size: int = 64,
    address: str | None = None,
) -> tuple[list[dict], dict]:
    """Score the run's global RTTMs (`link-speakers`) as one corpus-wide timeline against references
    whose speaker names are global (one speaker, one name in every recording, as the simulator's
    LibriSpeech ids): one optimal speaker mapping for the whole corpus, so a wrong link is confusion
    (`pipeline.scoring.metrics`, "corpus-wide scoring"). Also the per-recording DER of the same turns (each
    recording its own mapping: what linking cannot change, since it renames a recording's speakers
    one to one) and the purity and coverage of the links. Two passes of Ray tasks; writes
    `eval/global_recordings.parquet` and `eval/global_summary.json`."""
    from pipeline.corpus.outputs import OutputLayout
    from pipeline.corpus.preflight import check_collar
    from pipeline.corpus.ray_session import connect_ray
    from pipeline.linking.run import STATE_FILE
    from pipeline.scoring.metrics import global_mapping, link_purity_coverage

    collar = check_collar(collar)
    layout = OutputLayout(output, storage_options)
    if not layout.fs.exists(layout.path(STATE_FILE)):
        raise UsageError(
            f"{output} has no linked speakers (no {STATE_FILE}): "
            f"run `python -m pipeline link-speakers --output {output}` first"
        )
    manifests, rows = scored_rows(layout, manifests, storage_options)
    connect_ray(address, local_options={"include_dashboard": False}, log_to_driver=False)
    chunks = [rows[i : i + chunk_size] for i in range(0, len(rows), chunk_size)]
    first = [
        r
        for chunk in gather(
            [_global_first_pass.remote(c, layout.uri, collar, skip_overlap, storage_options) for c in chunks],
            f"global scoring of {counted(len(rows), 'recording')}, first pass, chunks done:",
        )
        for r in chunk
    ]
    missing = [r["uniq_id"] for r in first if r["missing"]]
    if missing:
        raise UsageError(
            f"{counted(len(missing), 'recording')} without a global RTTM (e.g. {missing[0]}): the run grew since it "
            "was linked; "
            f"run `python -m pipeline link-speakers --output {output}` again"
        )
    mapping = global_mapping(t for r in first for t in r["cooccurrence"])
    second_futures = []
    for index, chunk in enumerate(chunks):
        labels = {h for r in first[index * chunk_size : (index + 1) * chunk_size] for h, _, _ in r["cooccurrence"]}
        second_futures.append(
            _global_second_pass.remote(
                chunk,
                layout.uri,
                {h: mapping[h] for h in labels if h in mapping},
                collar,
                skip_overlap,
                storage_options,
            )
        )
    second_what = f"global scoring of {counted(len(rows), 'recording')}, second pass, chunks done:"
    second = [r for chunk in gather(second_futures, second_what) for r in chunk]

    per_recording = []
    for one, two in zip(first, second):
        reference = two["reference_speech_sec"]
        errors = two["missed_speech_sec"] + two["false_alarm_sec"] + two["confusion_sec"]
        per_recording.append(
            {
                "uniq_id": one["uniq_id"],
                "der": one["score"]["der"],
                "confusion_sec": one["score"]["confusion_sec"],
                "global_der": errors / reference if reference else (1.0 if errors else 0.0),
                "global_missed_speech_sec": two["missed_speech_sec"],
                "global_false_alarm_sec": two["false_alarm_sec"],
                "global_confusion_sec": two["confusion_sec"],
                "reference_speech_sec": reference,
            }
        )
    local = corpus_totals([r["score"] for r in first])
    reference = sum(r["reference_speech_sec"] for r in per_recording)
    seconds = {
        name: sum(r[f"global_{name}_sec"] for r in per_recording)
        for name in ("missed_speech", "false_alarm", "confusion")
    }
    items = []
    for r in first:
        overlaps: dict[str, dict[str, float]] = {}
        for hyp, ref, value in r["cooccurrence"]:
            overlaps.setdefault(hyp, {})[ref] = overlaps.get(hyp, {}).get(ref, 0.0) + value
        items.extend((r["uniq_id"], hyp, by_ref) for hyp, by_ref in overlaps.items())
    overall = {
        "recordings": len(per_recording),
        "per_recording_der": local["der"],
        "per_recording_confusion": local["confusion"],
        "global_der": sum(seconds.values()) / reference if reference else 0.0,
        **{f"global_{name}": value / reference if reference else 0.0 for name, value in seconds.items()},
        **{f"global_{name}_sec": value for name, value in seconds.items()},
        "reference_speech_sec": reference,
        **link_purity_coverage(items),
        "collar": collar,
        "skip_overlap": skip_overlap,
        "manifests": manifests,
    }
    overall["der_increase"] = overall["global_der"] - overall["per_recording_der"]
    table = pa.Table.from_pylist(per_recording, schema=GLOBAL_EVAL_SCHEMA)
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer)
    layout.write_atomically(layout.path("eval", "global_recordings.parquet"), buffer.getvalue().to_pybytes())
    layout.write_atomically(layout.path("eval", "global_summary.json"), json.dumps(overall, indent=2).encode())
    return per_recording, overall


def format_global(overall: dict) -> str:
    return "\n".join(
        [
            f"recordings scored: {overall['recordings']}",
            f"per-recording DER: {overall['per_recording_der']:7.2%}  (each recording its own speaker mapping)",
            f"global DER:        {overall['global_der']:7.2%}  "
            f"(one mapping for the corpus: miss {overall['global_missed_speech']:.2%}, "
            f"FA {overall['global_false_alarm']:.2%}, confusion {overall['global_confusion']:.2%}; "
            f"{overall['der_increase'] * 100:+.2f} points)",
            f"links: purity {overall['link_purity']:.3f}, coverage {overall['link_coverage']:.3f} (by seconds; "
            f"by item {overall['link_purity_items']:.3f} / {overall['link_coverage_items']:.3f}); "
            f"{overall['global_speakers']} global speakers for {overall['reference_speakers']} reference speakers",
        ]
    )


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
    lines.extend(f"not scored: {row['uniq_id']}: {row['reason']}" for row in overall.get("unscored", []))
    return "\n".join(lines)
