"""Diarization scoring (DER, JER, speaker counts) with pyannote.metrics, under NeMo's conventions.

`collar` here means what it means to NeMo and md-eval: ± seconds around each reference boundary.
pyannote's `collar` is the whole width of that window, so it gets `2 * collar`, exactly as NeMo's
`score_labels` does. Without a UEM the scored region is the extent of reference ∪ hypothesis (what
pyannote does for `uem=None`; it is built here so that pyannote has nothing to warn about).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, NamedTuple, Sequence

import numpy as np
from pyannote.core import Annotation, Segment, Timeline
from pyannote.metrics.diarization import JER_SPEAKER_COUNT, JER_SPEAKER_ERROR, DiarizationErrorRate, JaccardErrorRate
from pyannote.metrics.identification import IER_CONFUSION, IER_FALSE_ALARM, IER_MISS, IER_TOTAL, IdentificationErrorRate

from pipeline.io.rttm import Turn

if TYPE_CHECKING:
    from pipeline.io.manifest import ManifestRow

SCORING_PRESETS = {
    "full": {"collar": 0.0, "skip_overlap": False},
    "fair": {"collar": 0.25, "skip_overlap": False},
    "forgiving": {"collar": 0.25, "skip_overlap": True},
}


class ScoringItem(NamedTuple):
    """One recording to score; `uem` is a list of `(start, end)` scored regions or None."""

    uri: str
    reference: Sequence[Turn]
    hypothesis: Sequence[Turn]
    uem: Sequence[tuple[float, float]] | None = None


def to_annotation(turns: Iterable[Turn], uri: str) -> Annotation:
    annotation = Annotation(uri=uri)
    for track, turn in enumerate(turns):
        if turn.end > turn.start:
            annotation[Segment(turn.start, turn.end), track] = turn.speaker
    return annotation


def to_timeline(regions: Iterable[tuple[float, float]], uri: str) -> Timeline:
    return Timeline([Segment(start, end) for start, end in regions if end > start], uri=uri)


def extent_uem(reference: Annotation, hypothesis: Annotation) -> Timeline:
    """pyannote's scored region when there is no UEM: the extent of reference ∪ hypothesis."""
    extent = reference.get_timeline().extent() | hypothesis.get_timeline().extent()
    return Timeline([extent] if extent else [], uri=reference.uri)


def _metrics(collar: float, skip_overlap: bool) -> tuple[DiarizationErrorRate, JaccardErrorRate]:
    return (
        DiarizationErrorRate(collar=2 * collar, skip_overlap=skip_overlap),
        JaccardErrorRate(collar=2 * collar, skip_overlap=skip_overlap),
    )


def _fraction(seconds: float, total: float) -> float:
    """Share of reference speech; with no reference speech, any error counts as 100% (pyannote's rule)."""
    if total > 0:
        return seconds / total
    return 1.0 if seconds > 0 else 0.0


def _error_summary(components: dict, der: float, jer: float) -> dict:
    total = components[IER_TOTAL]
    seconds = {
        "missed_speech": components[IER_MISS],
        "false_alarm": components[IER_FALSE_ALARM],
        "confusion": components[IER_CONFUSION],
    }
    return {
        "der": der,
        **{name: _fraction(value, total) for name, value in seconds.items()},
        **{f"{name}_sec": value for name, value in seconds.items()},
        "reference_speech_sec": total,
        "jer": jer,
    }


def _score_into(
    der_metric: DiarizationErrorRate,
    jer_metric: JaccardErrorRate,
    item: ScoringItem,
) -> dict:
    """Score one recording, adding its components to the metrics' corpus totals."""
    reference = to_annotation(item.reference, item.uri)
    hypothesis = to_annotation(item.hypothesis, item.uri)
    uem = to_timeline(item.uem, item.uri) if item.uem is not None else extent_uem(reference, hypothesis)
    components = der_metric(reference, hypothesis, uem=uem, detailed=True)
    jer_components = jer_metric(reference, hypothesis, uem=uem, detailed=True)
    reference_speakers = len(reference.crop(uem).labels())
    hypothesis_speakers = len(hypothesis.crop(uem).labels())
    return {
        "uri": item.uri,
        **_error_summary(components, components[der_metric.metric_name_], jer_components[jer_metric.metric_name_]),
        # JER's own components, so that corpus JER can be summed from per-recording rows
        "jer_speaker_count": jer_components[JER_SPEAKER_COUNT],
        "jer_speaker_error": jer_components[JER_SPEAKER_ERROR],
        "reference_speakers": reference_speakers,
        "hypothesis_speakers": hypothesis_speakers,
        "speaker_count_error": hypothesis_speakers - reference_speakers,
    }


def score_recording(
    reference_turns: Sequence[Turn],
    hypothesis_turns: Sequence[Turn],
    uem_regions: Sequence[tuple[float, float]] | None = None,
    collar: float = 0.25,
    skip_overlap: bool = False,
    uri: str = "recording",
) -> dict:
    """DER and its parts (fractions of reference speech, and seconds), JER, and speaker counts
    (speakers with speech in the scored region). `collar` is ± seconds, NeMo's meaning."""
    item = ScoringItem(uri, reference_turns, hypothesis_turns, uem_regions)
    return _score_into(*_metrics(collar, skip_overlap), item)


def score_corpus(
    items: Iterable[ScoringItem | tuple],
    collar: float = 0.25,
    skip_overlap: bool = False,
) -> tuple[list[dict], dict]:
    """Per-recording scores and the corpus totals (see `corpus_totals`)."""
    der_metric, jer_metric = _metrics(collar, skip_overlap)
    per_recording = [_score_into(der_metric, jer_metric, ScoringItem(*item)) for item in items]
    return per_recording, corpus_totals(per_recording)


def corpus_totals(per_recording: Sequence[dict]) -> dict:
    """Corpus figures from per-recording rows, as one pyannote accumulator would give them: DER is
    total error seconds over total reference seconds (not a mean of ratios), JER is the mean over
    every reference speaker of every recording. Rows scored apart (in Ray tasks) sum the same way."""

    def total(key: str) -> float:
        return float(sum(row[key] for row in per_recording))

    reference = total("reference_speech_sec")
    seconds = {name: total(f"{name}_sec") for name in ("missed_speech", "false_alarm", "confusion")}
    speakers = total("jer_speaker_count")
    count_errors = [abs(row["speaker_count_error"]) for row in per_recording]
    return {
        "recordings": len(per_recording),
        "der": _fraction(sum(seconds.values()), reference),
        **{name: _fraction(value, reference) for name, value in seconds.items()},
        **{f"{name}_sec": value for name, value in seconds.items()},
        "reference_speech_sec": reference,
        "jer": total("jer_speaker_error") / speakers if speakers else 1.0,  # pyannote's convention
        "speaker_count_accuracy": sum(e == 0 for e in count_errors) / len(count_errors) if count_errors else 0.0,
        "mean_abs_speaker_count_error": sum(count_errors) / len(count_errors) if count_errors else 0.0,
    }


def load_reference(row: "ManifestRow", storage_options: dict | None = None):
    """A manifest row's reference turns and UEM regions (None when it names no UEM). Entries are
    looked up under the row's id, then the audio's base name (a disambiguated `<base>-<hash>` id
    still finds `<base>`), then, when the file describes a single recording, under whatever id it uses."""
    from pipeline.io.manifest import base_uniq_id
    from pipeline.io.rttm import read_rttm, read_uem
    from pipeline.io.storage import options_for

    def of_recording(by_file_id: dict):
        for name in (row.uniq_id, base_uniq_id(row.audio_filepath)):
            if name in by_file_id:
                return by_file_id[name]
        return next(iter(by_file_id.values())) if len(by_file_id) == 1 else None

    reference = of_recording(read_rttm(row.rttm_filepath, **options_for(row.rttm_filepath, storage_options))) or []
    uem = (
        of_recording(read_uem(row.uem_filepath, **options_for(row.uem_filepath, storage_options)))
        if row.uem_filepath
        else None
    )
    return reference, uem


def score_rows(
    rows: Iterable["ManifestRow"],
    hypotheses: dict[str, Sequence[Turn]],
    collar: float = 0.25,
    skip_overlap: bool = False,
    storage_options: dict | None = None,
) -> tuple[list[dict], dict]:
    """Score hypotheses (per `uniq_id`) against the references that manifest rows name;
    rows without a reference are skipped."""
    items = []
    for row in rows:
        if row.rttm_filepath and row.uniq_id in hypotheses:
            reference, uem = load_reference(row, storage_options)
            items.append(ScoringItem(row.uniq_id, reference, list(hypotheses[row.uniq_id]), uem))
    return score_corpus(items, collar=collar, skip_overlap=skip_overlap)


# ------------------------------------------------------------------ corpus-wide (global) scoring
#
# Scoring the global RTTMs "as one corpus-wide timeline" is DER on the concatenation of all
# recordings: one optimal mapping of hypothesis speakers to reference speakers for the whole corpus
# (so a speaker linked to the wrong global id counts as confusion), then errors frame by frame.
# pyannote's mapping is the Hungarian assignment on the co-occurrence matrix (seconds during which a
# reference and a hypothesis speaker both speak, after the UEM and the collars are applied), and the
# co-occurrence matrix of a concatenation is the sum of the recordings' matrices. So each recording
# gives its matrix (Ray tasks, `global_cooccurrence`), the driver solves the assignment
# (`global_mapping`), and each recording is scored with the mapping fixed (`mapped_components`):
# the same figures as one pyannote DER over the concatenated timeline, without building it.

UNMAPPED = "\u2400unmapped:"  # prefix of hypothesis speakers the global mapping leaves out (never a reference name)


def _uemified(item: ScoringItem, collar: float, skip_overlap: bool) -> tuple[Annotation, Annotation, Timeline]:
    reference = to_annotation(item.reference, item.uri)
    hypothesis = to_annotation(item.hypothesis, item.uri)
    uem = to_timeline(item.uem, item.uri) if item.uem is not None else extent_uem(reference, hypothesis)
    metric = DiarizationErrorRate(collar=2 * collar, skip_overlap=skip_overlap)
    return metric.uemify(reference, hypothesis, uem=uem, collar=2 * collar, skip_overlap=skip_overlap, returns_uem=True)


def global_cooccurrence(
    item: ScoringItem, collar: float = 0.25, skip_overlap: bool = False
) -> list[tuple[str, str, float]]:
    """`(hypothesis speaker, reference speaker, seconds)` for every pair that speaks together in the
    scored region of one recording (what pyannote's Hungarian mapper sums over)."""
    reference, hypothesis, _ = _uemified(item, collar, skip_overlap)
    if not reference.labels() or not hypothesis.labels():
        return []
    matrix = hypothesis * reference
    hyp_labels, ref_labels = hypothesis.labels(), reference.labels()
    return [(str(hyp_labels[i]), str(ref_labels[j]), float(matrix[i, j])) for i, j in zip(*np.nonzero(matrix > 0))]


def global_mapping(triples: Iterable[tuple[str, str, float]]) -> dict[str, str]:
    """The hypothesis -> reference mapping that maximises the total co-occurrence over the corpus
    (pyannote's Hungarian mapping of the concatenated timeline). Solved per connected component of
    the speakers' co-occurrence graph, so a corpus of many speakers never builds a dense matrix of
    all of them."""
    from collections import defaultdict

    from scipy.optimize import linear_sum_assignment
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    totals: dict[tuple[str, str], float] = defaultdict(float)
    for hyp, ref, seconds in triples:
        totals[(hyp, ref)] += seconds
    if not totals:
        return {}
    hyps = sorted({h for h, _ in totals})
    refs = sorted({r for _, r in totals})
    hyp_index, ref_index = {h: i for i, h in enumerate(hyps)}, {r: i for i, r in enumerate(refs)}
    rows = np.array([hyp_index[h] for h, _ in totals])
    columns = np.array([len(hyps) + ref_index[r] for _, r in totals])
    values = np.array(list(totals.values()))
    size = len(hyps) + len(refs)
    graph = coo_matrix((values, (rows, columns)), shape=(size, size))
    _, component = connected_components(graph, directed=False)
    mapping: dict[str, str] = {}
    order = np.argsort(component[rows], kind="stable")
    edge_components = component[rows][order]
    bounds = np.flatnonzero(np.diff(edge_components)) + 1
    for edges in np.split(order, bounds):
        edge_rows, edge_columns = rows[edges], columns[edges] - len(hyps)
        h_ids, r_ids = np.unique(edge_rows), np.unique(edge_columns)
        dense = np.zeros((len(h_ids), len(r_ids)))
        dense[np.searchsorted(h_ids, edge_rows), np.searchsorted(r_ids, edge_columns)] = values[edges]
        for i, j in zip(*linear_sum_assignment(-dense)):
            if dense[i, j] > 0:
                mapping[hyps[h_ids[i]]] = refs[r_ids[j]]
    return mapping


def mapped_components(
    item: ScoringItem, mapping: dict[str, str], collar: float = 0.25, skip_overlap: bool = False
) -> dict:
    """One recording's errors with the hypothesis speakers renamed by a fixed (corpus-wide) mapping:
    identification error rate components (pyannote's IER: no mapping of its own), in seconds."""
    renamed = [Turn(t.start, t.end, mapping.get(t.speaker, UNMAPPED + t.speaker)) for t in item.hypothesis]
    reference = to_annotation(item.reference, item.uri)
    hypothesis = to_annotation(renamed, item.uri)
    uem = to_timeline(item.uem, item.uri) if item.uem is not None else extent_uem(reference, hypothesis)
    metric = IdentificationErrorRate(collar=2 * collar, skip_overlap=skip_overlap)
    components = metric(reference, hypothesis, uem=uem, detailed=True)
    return {
        "uri": item.uri,
        "missed_speech_sec": components[IER_MISS],
        "false_alarm_sec": components[IER_FALSE_ALARM],
        "confusion_sec": components[IER_CONFUSION],
        "reference_speech_sec": components[IER_TOTAL],
    }


def link_purity_coverage(items: Iterable[tuple[str, str, dict[str, float]]]) -> dict:
    """Purity and coverage of the links: `items` are the (recording, global speaker) pairs with the
    seconds each reference speaker shares with them. Each item is labelled with its dominant
    reference speaker and weighted by those seconds (so a recording's own diarization errors weigh
    what they cover, and linking is what is measured); purity = share of the weight whose global
    speaker's dominant reference speaker is its own, coverage = share whose reference speaker's
    dominant global speaker is its own. Unlinked speakers are items of their own."""
    from collections import defaultdict

    weight: dict[tuple[str, str], float] = defaultdict(float)
    count: dict[tuple[str, str], int] = defaultdict(int)
    for _, cluster, overlaps in items:
        if not overlaps:
            continue
        label, seconds = max(overlaps.items(), key=lambda kv: (kv[1], kv[0]))
        weight[(cluster, label)] += seconds
        count[(cluster, label)] += 1

    def purity_and_coverage(table: dict[tuple[str, str], float]) -> tuple[float, float]:
        total = sum(table.values())
        if not total:
            return 0.0, 0.0
        by_cluster: dict[str, float] = defaultdict(float)
        by_label: dict[str, float] = defaultdict(float)
        for (cluster, label), value in table.items():
            by_cluster[cluster] = max(by_cluster[cluster], value)
            by_label[label] = max(by_label[label], value)
        return sum(by_cluster.values()) / total, sum(by_label.values()) / total

    purity, coverage = purity_and_coverage(weight)
    item_purity, item_coverage = purity_and_coverage({key: float(value) for key, value in count.items()})
    return {
        "link_purity": purity,
        "link_coverage": coverage,
        "link_purity_items": item_purity,
        "link_coverage_items": item_coverage,
        "linked_items": sum(count.values()),
        "global_speakers": len({cluster for cluster, _ in weight}),
        "reference_speakers": len({label for _, label in weight}),
    }
