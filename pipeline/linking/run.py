"""Corpus-wide speaker linking of a run's output: the same voice gets the same global id in every
recording.

Input: the run's `speakers/` table, one unit-norm embedding centroid per (recording, speaker).
Output (`link_run`): `speaker_links.parquet`, `global_speakers.parquet`, `global_rttm/<uniq_id>.rttm`
and `linking.json` in the run's folder, through its `OutputLayout`. The criterion, its scale and the
incremental linking are `pipeline.linking.algorithm`'s.

Speakers with less than `min_speech_seconds` of speech are not linked: they get no global id (null in
`speaker_links.parquet`) and their turns keep a label of their own, `unlinked/<uniq_id>/<speaker>`,
in the global RTTM, so a scorer counts them as one more speaker."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray

from pipeline.console import counted, still_working
from pipeline.corpus.lease import OutputLease
from pipeline.corpus.outputs import OutputLayout
from pipeline.corpus.progress import gather
from pipeline.corpus.ray_session import connect_ray
from pipeline.errors import UsageError
from pipeline.io.rttm import Turn, rttm_text
from pipeline.linking import DEFAULT_MIN_SPEECH_SECONDS, ESTIMATE
from pipeline.linking.algorithm import BLOCK_SIZE, EXACT_MAX, EarlierLinkingBroken, LinkResult, link_centroids
from pipeline.linking.threshold import linking_threshold_for
from pipeline.signals import exit_on_sigterm

GLOBAL_ID_PREFIX = "G"
UNLINKED_PREFIX = "unlinked"
LINKS_FILE, GLOBAL_SPEAKERS_FILE, STATE_FILE, GLOBAL_RTTM = (
    "speaker_links.parquet",
    "global_speakers.parquet",
    "linking.json",
    "global_rttm",
)


def global_id(index: int) -> str:
    return f"{GLOBAL_ID_PREFIX}{index:06d}"


def global_index(name: str | None) -> int | None:
    if name and name.startswith(GLOBAL_ID_PREFIX) and name[len(GLOBAL_ID_PREFIX) :].isdigit():
        return int(name[len(GLOBAL_ID_PREFIX) :])
    return None


def unlinked_label(uniq_id: str, speaker: str) -> str:
    return f"{UNLINKED_PREFIX}/{uniq_id}/{speaker}"


def read_speakers(layout) -> tuple[Any, list[str], str | None]:
    """The committed `speakers` rows (uniq_id, speaker, speech_seconds, centroid) with the token of
    the part each comes from, the tokens, and the model that wrote them; read part by part with pyarrow."""
    tables, tokens, models = [], [], set()
    for token in layout.committed_tokens("speakers"):
        with layout.fs.open(layout.part_path("speakers", token), "rb") as f:
            table = pq.read_table(f, columns=["uniq_id", "speaker", "speech_seconds", "centroid", "model"])
        models.update(table.column("model").unique().to_pylist())
        tables.append(
            table.drop_columns(["model"]).append_column(
                "part", pa.array(np.full(table.num_rows, len(tokens), np.int64))
            )
        )
        tokens.append(token)
    if not tables:
        return None, [], None
    sizes = {t.schema.field("centroid").type.list_size for t in tables}
    if len(models) > 1 or len(sizes) != 1:
        raise UsageError(
            f"speakers/ holds the centroids of several models ({', '.join(sorted(models))}; sizes {sorted(sizes)}): "
            "their embeddings cannot be compared; link the run of one model"
        )
    return pa.concat_tables(tables), tokens, models.pop() if models else None


def centroid_matrix(table) -> np.ndarray:
    column = table.column("centroid").combine_chunks()
    size = column.type.list_size
    return np.asarray(column.flatten().to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, size)


def read_previous(layout) -> tuple[dict[tuple[str, str], str], dict]:
    """The global ids an earlier linking gave, {(uniq_id, speaker): global_speaker}, and its state."""

    links: dict[tuple[str, str], str] = {}
    path = layout.path(LINKS_FILE)
    if layout.fs.exists(path):
        with layout.fs.open(path, "rb") as f:
            table = pq.read_table(f, columns=["uniq_id", "speaker", "global_speaker"])
        for uniq_id, speaker, name in zip(
            *(table.column(c).to_pylist() for c in ("uniq_id", "speaker", "global_speaker"))
        ):
            if name is not None:
                links[(uniq_id, speaker)] = name
    state = {}
    if layout.fs.exists(layout.path(STATE_FILE)):
        with layout.fs.open(layout.path(STATE_FILE), "rb") as f:
            state = json.loads(f.read().decode("utf-8"))
    return links, state


def write_global_rttms(
    layout_uri: str,
    storage_options: dict | None,
    token: str,
    mapping: dict[tuple[str, str], str],
    only: list[str] | None,
) -> int:
    """Ray task: the global RTTMs of one committed block (`only`: just these recordings, else all its
    ok recordings), from its segments part with each speaker replaced by its global label."""

    layout = OutputLayout(layout_uri, storage_options)
    with layout.fs.open(layout.part_path("recordings", token), "rb") as f:
        recordings = pq.read_table(f, columns=["uniq_id", "status"]).to_pylist()
    with layout.fs.open(layout.part_path("segments", token), "rb") as f:
        segments = pq.read_table(f, columns=["uniq_id", "speaker", "start", "end"]).to_pylist()
    wanted = {r["uniq_id"] for r in recordings if r["status"] == "ok"}
    if only is not None:
        wanted &= set(only)
    turns: dict[str, list[Turn]] = {uniq_id: [] for uniq_id in wanted}
    for s in segments:
        if s["uniq_id"] in turns:
            label = mapping.get((s["uniq_id"], s["speaker"])) or unlinked_label(s["uniq_id"], s["speaker"])
            turns[s["uniq_id"]].append(Turn(s["start"], s["end"], label))
    for uniq_id, recording_turns in turns.items():
        layout.write_atomically(
            layout.path(GLOBAL_RTTM, f"{uniq_id}.rttm"), rttm_text(uniq_id, recording_turns).encode("utf-8")
        )
    return len(turns)


def link_run(
    output: str,
    threshold: float | str | None = None,
    min_speech_seconds: float = DEFAULT_MIN_SPEECH_SECONDS,
    storage_options: dict | None = None,
    address: str | None = None,
    fresh: bool = False,
    exact_max: int = EXACT_MAX,
    block_size: int = BLOCK_SIZE,
) -> dict[str, Any]:
    """Link the speakers of the run in `output` into global speakers (see the module docstring) and
    write `speaker_links.parquet`, `global_speakers.parquet`, `global_rttm/` and `linking.json`.
    A rerun keeps every global id given before (`fresh=True` forgets them and links from scratch),
    links the speakers added since (a `--resume` that grew the run) and rewrites only the global
    RTTMs that changed. Holds the output's lease, so it never runs beside a corpus run on it.
    `threshold=None` takes the threshold the model that wrote `speakers/` declares (`linking_threshold`),
    else one learnt from the corpus; `threshold="estimate"` learns it whatever the model declares
    (`pipeline.linking.threshold`)."""

    started = time.perf_counter()
    if threshold is not None and threshold != ESTIMATE:
        if isinstance(threshold, str) or not (math.isfinite(threshold) and -1.0 <= threshold <= 1.0):
            raise UsageError(f"--threshold must be a cosine similarity in [-1, 1] or {ESTIMATE!r}, got {threshold}")
    if not (math.isfinite(min_speech_seconds) and min_speech_seconds >= 0):
        raise UsageError(f"--min-speech-seconds must be >= 0, got {min_speech_seconds}")
    layout = OutputLayout(output, storage_options)
    if not layout.part_tokens("recordings"):
        raise UsageError(f"{output} holds no corpus run (no recordings/): run `python -m pipeline diarize` first")
    exit_on_sigterm()
    with OutputLease(output, storage_options).acquire(resume=True):
        layout.refuse_links()
        layout.remove_temporaries()
        table, tokens, model = read_speakers(layout)
        if table is None or table.num_rows == 0:
            raise UsageError(
                f"{output}/speakers/ is empty: the run's model gives no speaker embeddings "
                "(InternalDiarizeConfig.speaker_embeddings), so there is nothing to link"
            )
        previous, state = ({}, {}) if fresh else read_previous(layout)
        uniq_ids = table.column("uniq_id").to_pylist()
        speakers = table.column("speaker").to_pylist()
        speech = table.column("speech_seconds").to_numpy()
        parts = table.column("part").to_numpy()
        centroids = centroid_matrix(table)
        recordings = table.column("uniq_id").combine_chunks().dictionary_encode().indices.to_numpy().astype(np.int64)
        del table  # the centroids matrix keeps only its own buffer: 1 KB a centroid (GE2E), not twice that

        existing = np.full(len(uniq_ids), -1, dtype=np.int64)
        kept_names: dict[int, str] = {}
        for row, key in enumerate(zip(uniq_ids, speakers)):
            name = previous.get(key)
            index = global_index(name)
            if index is not None:
                existing[row] = index
                kept_names[index] = name
        linked = (speech >= min_speech_seconds) | (existing >= 0)
        chosen = linking_threshold_for(threshold, model, centroids, recordings, linked)
        connect_ray(address, local_options={"include_dashboard": False}, log_to_driver=False)
        try:
            with still_working(f"linking {counted(int(linked.sum()), 'speaker')} at threshold {chosen.value}"):
                result = link_centroids(
                    centroids,
                    recordings,
                    chosen.value,
                    linked,
                    existing,
                    exact_max=exact_max,
                    block_size=block_size,
                    use_ray=True,
                )
        except EarlierLinkingBroken as error:
            raise UsageError(f"{output}/{LINKS_FILE}: {error}; link again from scratch with --fresh") from None
        names = [global_id(i) if i >= 0 else None for i in result.labels.tolist()]

        # Global RTTMs first: of new blocks all, of blocks linked before only the recordings whose labels changed.
        linked_before = set(state.get("tokens", [])) if not fresh else set()
        changed: dict[int, set[str]] = {}
        for row, (key, name) in enumerate(zip(zip(uniq_ids, speakers), names)):
            if previous.get(key) != name:
                changed.setdefault(int(parts[row]), set()).add(key[0])
        mapping_by_part: dict[int, dict] = {}
        for row, (key, name) in enumerate(zip(zip(uniq_ids, speakers), names)):
            if name is not None:
                mapping_by_part.setdefault(int(parts[row]), {})[key] = name

        remote = ray.remote(num_cpus=1)(write_global_rttms)
        jobs = []
        for part, token in enumerate(tokens):
            if token not in linked_before:
                jobs.append(remote.remote(layout.uri, storage_options, token, mapping_by_part.get(part, {}), None))
            elif changed.get(part):
                jobs.append(
                    remote.remote(
                        layout.uri, storage_options, token, mapping_by_part.get(part, {}), sorted(changed[part])
                    )
                )
        rttms = sum(gather(jobs, "writing global RTTMs, blocks done:"))

        links = pa.table(
            {
                "uniq_id": pa.array(uniq_ids, pa.string()),
                "speaker": pa.array(speakers, pa.string()),
                "global_speaker": pa.array(names, pa.string()),
                "confidence": pa.array(
                    np.where(result.labels >= 0, result.confidence, np.nan), pa.float32(), mask=result.labels < 0
                ),
            }
        )
        global_speakers = global_speakers_table(result, uniq_ids, speech)
        layout.write_table(layout.path(GLOBAL_SPEAKERS_FILE), global_speakers)
        layout.write_table(layout.path(LINKS_FILE), links)
        new_ids = sum(1 for i in set(result.labels.tolist()) if i >= 0 and i not in kept_names)
        summary = {
            "threshold": chosen.value,
            "threshold_source": chosen.source,
            "threshold_pairs": chosen.pairs,
            "min_speech_seconds": min_speech_seconds,
            "speakers": len(uniq_ids),
            "linked": int((result.labels >= 0).sum()),
            "unlinked": int((result.labels < 0).sum()),
            "global_speakers": int(global_speakers.num_rows),
            "new_global_speakers": new_ids,
            "kept_links": int((existing >= 0).sum()),
            "attached_to_existing": int(
                ((existing < 0) & (result.labels >= 0) & np.isin(result.labels, list(kept_names))).sum()
            )
            if kept_names
            else 0,
            "recordings": len(set(uniq_ids)),
            "global_rttms_written": int(rttms),
            "rounds": result.rounds,
            "embedding_size": int(centroids.shape[1]),
            "wall_seconds": round(time.perf_counter() - started, 3),
            "fresh": fresh,
            "previous_threshold": state.get("threshold"),
            "tokens": tokens,
        }
        layout.write_atomically(layout.path(STATE_FILE), (json.dumps(summary, indent=2) + "\n").encode("utf-8"))
    return summary


def global_speakers_table(result: LinkResult, uniq_ids: list[str], speech: np.ndarray):
    """One row per global speaker with members: recordings, hours of speech, confidences, centroid."""

    labels = result.labels
    used = np.unique(labels[labels >= 0])
    members = labels >= 0
    position = np.searchsorted(used, labels[members])
    recordings = np.bincount(position, minlength=len(used))
    seconds = np.bincount(position, weights=speech[members], minlength=len(used))
    confidence = result.confidence[members].astype(np.float64)
    mean_confidence = np.bincount(position, weights=confidence, minlength=len(used)) / np.maximum(recordings, 1)
    minimum = np.full(len(used), np.inf)
    np.minimum.at(minimum, position, confidence)
    size = result.centroids.shape[1]
    flat = pa.array(result.centroids[used].reshape(-1), pa.float32())
    return pa.table(
        {
            "global_speaker": pa.array([global_id(int(i)) for i in used], pa.string()),
            "recordings": pa.array(recordings.astype(np.int64), pa.int64()),
            "hours": pa.array(seconds / 3600.0, pa.float64()),
            "mean_confidence": pa.array(mean_confidence, pa.float64()),
            "min_confidence": pa.array(minimum, pa.float64()),
            "centroid": pa.FixedSizeListArray.from_arrays(flat, size),
        }
    )
