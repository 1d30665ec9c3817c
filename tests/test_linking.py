"""Corpus-wide speaker linking on synthetic centroids (`pipeline.linking.algorithm`): the constrained AHC, the
blocked path for large counts (on Ray), incremental linking, the conflict repair, and the global
scoring arithmetic (`pipeline.scoring.metrics`) against pyannote on a literally concatenated timeline."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest

from benchmarks.synthetic_speakers import purity_coverage, synthetic_centroids
from pipeline.errors import UsageError
from pipeline.io.rttm import Turn
from pipeline.linking.algorithm import Groups, constrained_ahc, link_centroids, repair_conflicts
from pipeline.linking.threshold import linking_threshold_for, within_recording_pairs, within_recording_similarities
from pipeline.speakers import speaker_centroids


def unit(vectors) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def singletons(centroids, recordings) -> Groups:
    n = len(centroids)
    return Groups(
        unit(centroids),
        np.ones(n, np.int64),
        np.arange(n + 1, dtype=np.int64),
        np.asarray(recordings, np.int64),
        np.zeros(n, bool),
    )


def violations(labels, recordings) -> int:
    """(global speaker, recording) pairs that hold more than one speaker."""
    pairs = Counter((int(g), int(r)) for g, r in zip(labels, recordings) if g >= 0)
    return sum(count > 1 for count in pairs.values())


# ------------------------------------------------------------------------------------ centroids


def test_speaker_centroids_are_renormalised_means_of_unit_embeddings_under_the_segment_names():
    embeddings = np.array([[3, 0], [0, 1], [1, 0], [0, 5], [7, 7]], dtype=np.float32)
    labels = np.array([0, 1, 0, 1, 2])
    centroids = speaker_centroids(embeddings, labels, {1: "speaker_0", 0: "speaker_1"})  # cluster 2 produced no turn
    assert set(centroids) == {"speaker_0", "speaker_1"}
    np.testing.assert_allclose(centroids["speaker_1"][0], [1, 0], atol=1e-6)
    np.testing.assert_allclose(centroids["speaker_0"][0], [0, 1], atol=1e-6)
    assert centroids["speaker_1"][1] == 2 and centroids["speaker_0"][0].dtype == np.float32
    # unit embeddings of different lengths weigh the same: mean of (1,0) and (0,1) -> (0.707, 0.707)
    ((vector, count),) = speaker_centroids(np.array([[10, 0], [0, 0.1]]), np.array([0, 0]), ["speaker_0"]).values()
    np.testing.assert_allclose(vector, [2**-0.5, 2**-0.5], atol=1e-6)
    assert count == 2


# ------------------------------------------------------------------------------------ cannot-link


def test_two_speakers_of_one_recording_never_merge_however_similar():
    # a and a' are the same voice (cosine 0.999) but were found as two speakers of recording 0.
    a = [1.0, 0.02, 0.0]
    groups = singletons([a, [1.0, 0.0, 0.02], [1.0, 0.01, 0.01], [0.0, 1.0, 0.0]], recordings=[0, 0, 1, 1])
    labels = constrained_ahc(groups, threshold=0.5)
    assert labels[0] != labels[1], "the cannot-link constraint holds"
    assert labels[2] in (labels[0], labels[1]) and labels[3] not in (labels[0], labels[1])
    assert violations(labels, groups.rec_ids) == 0


def test_a_constraint_is_inherited_by_the_groups_merged_later():
    # x0 (rec 0) ~ y (rec 1) ~ x0' (rec 0): y may join one of them, and the group can then never take the other.
    groups = singletons([[1, 0.05], [1, 0], [1, -0.05]], recordings=[0, 1, 0])
    labels = constrained_ahc(groups, threshold=0.9)
    assert len(set(labels.tolist())) == 2 and labels[0] != labels[2]


def test_exact_linking_finds_the_speakers_of_a_synthetic_corpus():
    data = synthetic_centroids(1500, 60, seed=3)
    result = link_centroids(data.centroids, data.recordings, threshold=0.8, use_ray=False)
    purity, coverage = purity_coverage(result.labels, data.speakers)
    assert purity >= 0.99 and coverage >= 0.99
    assert violations(result.labels, data.recordings) == 0
    assert result.rounds[0].get("exact"), "1,500 centroids: one exact AHC"
    assert result.confidence.min() > 0.8 and result.confidence.max() <= 1.0 + 1e-6
    # global ids in order of first centroid
    firsts = [int(np.flatnonzero(result.labels == g)[0]) for g in range(result.labels.max() + 1)]
    assert firsts == sorted(firsts)


def test_speakers_kept_out_of_linking_get_no_global_id():
    data = synthetic_centroids(300, 20, seed=4)
    linked = data.speech_seconds >= 30
    result = link_centroids(data.centroids, data.recordings, threshold=0.8, linked=linked, use_ray=False)
    assert (result.labels[~linked] == -1).all() and np.isnan(result.confidence[~linked]).all()
    assert (result.labels[linked] >= 0).all()


# ------------------------------------------------------------------------------------ large counts


def test_the_blocked_path_on_ray_links_20000_centroids_like_the_exact_one(local_ray):
    data = synthetic_centroids(20_000, 1200, seed=5)
    result = link_centroids(data.centroids, data.recordings, threshold=0.8, use_ray=True)
    blocked = [r for r in result.rounds if r.get("blocks", 1) > 1]
    assert blocked and blocked[0]["largest_block"] <= 4000, "above exact_max the groups are clustered in blocks"
    purity, coverage = purity_coverage(result.labels, data.speakers)
    assert purity >= 0.99 and coverage >= 0.99
    assert violations(result.labels, data.recordings) == 0


def test_when_the_distinct_speakers_outnumber_exact_max_rounds_stop_and_the_constraint_still_holds():
    data = synthetic_centroids(6000, 2500, seed=6)
    result = link_centroids(
        data.centroids, data.recordings, threshold=0.8, exact_max=500, block_size=300, use_ray=False
    )
    assert not any(r.get("exact") for r in result.rounds), "more than exact_max groups remain: no final exact pass"
    purity, coverage = purity_coverage(result.labels, data.speakers)
    assert purity >= 0.99 and coverage >= 0.95
    assert violations(result.labels, data.recordings) == 0


# ------------------------------------------------------------------------------------ incremental


def test_an_incremental_linking_keeps_every_existing_id_and_attaches_new_speakers():
    data = synthetic_centroids(2000, 80, seed=7)
    first = data.recordings < data.recordings.max() // 2
    before = link_centroids(data.centroids[first], data.recordings[first], threshold=0.8, use_ray=False)
    existing = np.full(len(data.centroids), -1, dtype=np.int64)
    existing[first] = before.labels
    after = link_centroids(data.centroids, data.recordings, threshold=0.8, existing=existing, use_ray=False)
    assert (after.labels[first] == before.labels).all(), "existing global ids are stable"
    known = before.labels.max() + 1
    returning = ~first & np.isin(data.speakers, data.speakers[first])
    assert (after.labels[returning] < known).mean() >= 0.99, "speakers seen before join their global id"
    newcomers = ~first & ~np.isin(data.speakers, data.speakers[first])
    assert (after.labels[newcomers] >= known).all(), "new voices get new ids, after the existing ones"
    purity, coverage = purity_coverage(after.labels, data.speakers)
    assert purity >= 0.99 and coverage >= 0.99
    assert violations(after.labels, data.recordings) == 0


def test_two_existing_global_speakers_never_merge_even_when_identical():
    centroids = unit([[1, 0], [1, 0.001], [1, 0.0005]])
    existing = np.array([0, 1, -1])
    result = link_centroids(centroids, np.array([0, 1, 2]), threshold=0.5, existing=existing, use_ray=False)
    assert result.labels[0] == 0 and result.labels[1] == 1 and result.labels[2] in (0, 1)


# ------------------------------------------------------------------------------------ repair


def test_a_voice_split_in_one_recording_costs_only_the_weaker_piece():
    rng = np.random.default_rng(0)
    voice, other = unit([[1, 0.3, 0.0, 0.0]])[0], unit([[0.0, 0.3, 1, 0.0]])[0]
    # recordings 1..8 have the voice once; recording 0 has it twice (a diarization split): a strong
    # piece and a weak one; recording 0 and 9 also have another voice.
    vectors = [voice + 0.05 * rng.standard_normal(4) for _ in range(8)] + [
        voice + 0.02,
        voice + 0.12 * rng.standard_normal(4),
        other,
        other + 0.01,
    ]
    recordings = list(range(1, 9)) + [0, 0, 0, 9]
    centroids = unit(vectors)
    groups = singletons(centroids, recordings)
    plain = constrained_ahc(groups, threshold=0.8)
    repaired, merges = repair_conflicts(
        centroids, np.array(recordings), plain, np.full(len(vectors), -1), threshold=0.8
    )
    voice_ids = Counter(repaired[:10].tolist())
    assert voice_ids.most_common(1)[0][1] == 9, "all pieces of the voice but one share a global speaker"
    assert violations(repaired, recordings) == 0
    assert len(set(plain[:10].tolist())) >= 2 or merges == 0


# ------------------------------------------------------------------------------------ scoring


def test_global_scoring_equals_pyannote_der_on_the_concatenated_timeline():
    from pyannote.core import Annotation, Segment
    from pyannote.metrics.diarization import DiarizationErrorRate

    from pipeline.scoring.metrics import (
        ScoringItem,
        extent_uem,
        global_cooccurrence,
        global_mapping,
        mapped_components,
        to_annotation,
    )

    rng = np.random.default_rng(1)
    voices = ["1034", "200", "7278", "8419"]
    items = []
    for r in range(6):
        speakers = rng.choice(voices, 2, replace=False)
        reference, hypothesis = [], []
        t = 0.0
        for k in range(12):
            speaker = speakers[k % 2]
            length = float(rng.uniform(1, 4))
            reference.append(Turn(t, t + length, str(speaker)))
            # the hypothesis: a shifted boundary, and global ids that link 3 of 4 voices right
            wrong = r == 5 and speaker == "200"
            hypothesis.append(Turn(t + 0.1, t + length - 0.05, "G9" if wrong else f"G{voices.index(speaker)}"))
            t += length + float(rng.uniform(0, 0.5))
        items.append(ScoringItem(f"rec{r}", reference, hypothesis, None))

    for collar, skip in ((0.0, False), (0.25, False), (0.25, True)):
        mapping = global_mapping(t for item in items for t in global_cooccurrence(item, collar, skip))
        parts = [mapped_components(item, mapping, collar, skip) for item in items]
        errors = sum(p["missed_speech_sec"] + p["false_alarm_sec"] + p["confusion_sec"] for p in parts)
        ours = errors / sum(p["reference_speech_sec"] for p in parts)

        # one timeline: recordings one after the other, each scored over its own extent (its UEM)
        reference, hypothesis, shift = Annotation(uri="corpus"), Annotation(uri="corpus"), 0.0
        uem_segments = []
        for item in items:
            extent = extent_uem(
                to_annotation(item.reference, item.uri), to_annotation(item.hypothesis, item.uri)
            ).extent()
            for track, turn in enumerate(item.reference):
                reference[Segment(turn.start + shift, turn.end + shift), f"{item.uri}-{track}"] = turn.speaker
            for track, turn in enumerate(item.hypothesis):
                hypothesis[Segment(turn.start + shift, turn.end + shift), f"{item.uri}-{track}"] = turn.speaker
            uem_segments.append(Segment(extent.start + shift, extent.end + shift))
            shift += extent.end + 100.0
        from pyannote.core import Timeline

        theirs = DiarizationErrorRate(collar=2 * collar, skip_overlap=skip)(
            reference, hypothesis, uem=Timeline(uem_segments)
        )
        assert ours == pytest.approx(theirs, abs=1e-9)
        assert ours > 0.05, "the wrong link of rec5 is confusion"


def test_link_purity_and_coverage():
    from pipeline.scoring.metrics import link_purity_coverage

    perfect = [("r1", "G0", {"a": 10.0}), ("r2", "G0", {"a": 5.0}), ("r1", "G1", {"b": 8.0, "a": 1.0})]
    scores = link_purity_coverage(perfect)
    assert (scores["link_purity"], scores["link_coverage"]) == (1.0, 1.0)
    split = perfect + [("r3", "G2", {"a": 5.0})]  # voice a split over G0 and G2
    scores = link_purity_coverage(split)
    assert scores["link_purity"] == 1.0 and scores["link_coverage"] == pytest.approx(23 / 28)
    merged = [("r1", "G0", {"a": 10.0}), ("r2", "G0", {"b": 10.0})]  # two voices under one id
    scores = link_purity_coverage(merged)
    assert scores["link_purity"] == 0.5 and scores["link_coverage"] == 1.0


def test_the_fast_ahc_merges_exactly_as_the_textbook_greedy_one():
    """Brute force: every step, the allowed pair of clusters with the highest mean pairwise cosine."""
    import itertools

    import pipeline.linking.algorithm as linking

    def textbook(vectors, recordings, threshold):
        clusters, similarity = (
            [[i] for i in range(len(vectors))],
            vectors.astype(np.float64) @ vectors.T.astype(np.float64),
        )
        while True:
            candidates = [
                (similarity[np.ix_(clusters[a], clusters[b])].mean(), a, b)
                for a, b in itertools.combinations(range(len(clusters)), 2)
                if not set(recordings[clusters[a]]) & set(recordings[clusters[b]])
            ]
            value, a, b = max(candidates, default=(-np.inf, 0, 0))
            if value < threshold:
                return {frozenset(c) for c in clusters}
            clusters[a] += clusters.pop(b)

    for seed in range(2):
        data = synthetic_centroids(80, 10, seed=seed, between=0.75, within=0.93)
        groups = singletons(data.centroids, data.recordings)
        for compact_above in (10**9, 8):  # with and without compacting the matrix
            linking.COMPACT_ABOVE, saved = compact_above, linking.COMPACT_ABOVE
            try:
                labels = constrained_ahc(groups, 0.8)
            finally:
                linking.COMPACT_ABOVE = saved
            ours = {frozenset(np.flatnonzero(labels == k).tolist()) for k in range(labels.max() + 1)}
            assert ours == textbook(data.centroids, data.recordings, 0.8)


def test_each_model_links_at_its_own_dev_threshold_and_one_that_declares_none_at_one_learnt_from_the_corpus():
    data = synthetic_centroids(400, 40, dim=64, seed=3)
    linked = np.ones(len(data.centroids), bool)

    def threshold(given, model, rows=linked):
        return linking_threshold_for(given, model, data.centroids, data.recordings, rows)

    # the thresholds each model declares, chosen on the dev split (docs/RESULTS.md)
    assert threshold(None, "ge2e").value == 0.84
    assert threshold(None, "default").value == 0.68, "CAM++ and GE2E similarities are on different scales"
    assert (threshold(0.5, "ge2e").value, threshold(0.5, "ge2e").source) == (0.5, "given by the caller")
    # a model that declares none: the 95th percentile of the similarities of two speakers of one recording
    learnt = threshold(None, "my_package.models:MyDiarizer")
    pairs = [
        float(data.centroids[i] @ data.centroids[j])
        for i, j in itertools.combinations(range(len(data.centroids)), 2)
        if data.recordings[i] == data.recordings[j]
    ]
    assert learnt.pairs == len(pairs) and learnt.value == pytest.approx(np.quantile(pairs, 0.95), abs=1e-4)
    assert "95th percentile" in learnt.source and "'my_package.models:MyDiarizer' declares no" in learnt.source
    assert threshold("estimate", "ge2e").value == learnt.value, "asked for, whatever the model declares"
    # with too few recordings of two speakers there is nothing to learn from: the fix in one line
    with pytest.raises(UsageError, match="pass --threshold"):
        threshold(None, "my_package.models:MyDiarizer", rows=np.arange(len(linked)) < 6)


def test_within_recording_pairs_are_every_two_speakers_of_one_recording_and_a_sample_above_the_cap():
    rng = np.random.default_rng(0)
    recordings = rng.integers(0, 50, 300)  # unsorted codes, up to 15 speakers a recording
    first, second = within_recording_pairs(recordings)
    expected = {(i, j) for i, j in itertools.combinations(range(len(recordings)), 2) if recordings[i] == recordings[j]}
    assert set(zip(first.tolist(), second.tolist())) == expected and len(first) == len(expected)
    rank = [int((recordings[:i] == recordings[i]).sum()) for i in range(len(recordings))]  # place in its recording
    capped = set(zip(*(side.tolist() for side in within_recording_pairs(recordings, max_ranks=3))))
    assert capped == {(i, j) for i, j in expected if rank[j] - rank[i] <= 3} != expected
    centroids = unit(rng.standard_normal((300, 8)))
    rows = np.flatnonzero(rng.random(300) < 0.5)  # the linked speakers only, the matrix indexed in place
    kept = set(rows.tolist())
    inside = sorted(float(centroids[i] @ centroids[j]) for i, j in expected if i in kept and j in kept)
    every = within_recording_similarities(centroids, recordings, rows)
    assert sorted(every) == pytest.approx(inside, abs=1e-6)
    sample = within_recording_similarities(centroids, recordings, rows, max_pairs=50)
    assert len(sample) == 50 and set(np.round(sample, 5)) <= set(np.round(every, 5))
