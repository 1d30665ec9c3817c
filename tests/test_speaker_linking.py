"""Corpus-wide speaker linking through the real Ray corpus pipeline and the GE2E model (`ge2e`):
a simulated corpus whose speakers recur (LibriSpeech ids as global reference names), the
`speakers/` table, `link-speakers` (global ids right, no two speakers of one recording merged),
a run that grows by `--resume` and is linked again (old ids unchanged), and `evaluate --global`."""

from __future__ import annotations

import json
from collections import Counter, defaultdict

import numpy as np
import pyarrow.parquet as pq
import pytest

from benchmarks.splits import RecurringSplit, recurring_manifest
from pipeline.io.rttm import read_rttm

# The light model: its embeddings link at their own dev-chosen threshold (its declared linking_threshold).
GE2E = "ge2e"
# 10 conversations of 30-45 s, 2-3 speakers each, from 5 speakers; 16 kHz and 8 kHz files, gains varied.
SPEC = RecurringSplit(num=10, pool_size=5, speakers_range=(2, 3), duration_range=(30.0, 45.0), seed=77)
FIRST_ROWS = 6

pytestmark = pytest.mark.slow  # two corpus runs of the GE2E model: about 2.5 minutes on 2 cores


@pytest.fixture(scope="module")
def grown_run(local_ray, tmp_path_factory):
    """A run of the first 6 rows, linked; then `--resume` with all 10, linked again."""
    import pipeline
    from pipeline.linking.run import link_run

    manifest = recurring_manifest("test", str(tmp_path_factory.mktemp("corpus")), SPEC)
    output = tmp_path_factory.mktemp("run")
    pipeline.run_corpus(manifest, str(output), model=GE2E, batch_size=2, limit=FIRST_ROWS)
    first = link_run(str(output))
    first_links = pq.read_table(output / "speaker_links.parquet").to_pylist()
    first_rttms = {p.name: p.read_text() for p in (output / "global_rttm").iterdir()}
    pipeline.run_corpus(manifest, str(output), model=GE2E, batch_size=2, resume=True)
    second = link_run(str(output))
    return {
        "manifest": manifest,
        "output": output,
        "first": first,
        "second": second,
        "first_links": first_links,
        "first_rttms": first_rttms,
    }


def reference_of(manifest: str) -> dict[str, list]:
    folder = manifest.rsplit("/", 1)[0]
    rows = [json.loads(line) for line in open(manifest, encoding="utf-8")]
    return {row["uniq_id"]: read_rttm(f"{folder}/{row['rttm_filepath']}")[row["uniq_id"]] for row in rows}


def dominant_reference(output, manifest) -> dict[tuple[str, str], str]:
    """Each (recording, speaker) of the run's segments -> the reference speaker it overlaps most."""
    references = reference_of(manifest)
    overlap: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for turn in pq.read_table(output / "segments").to_pylist():
        for ref in references[turn["uniq_id"]]:
            seconds = min(turn["end"], ref.end) - max(turn["start"], ref.start)
            if seconds > 0:
                overlap[(turn["uniq_id"], turn["speaker"])][ref.speaker] += seconds
    return {key: counts.most_common(1)[0][0] for key, counts in overlap.items()}


def test_every_run_writes_one_speakers_row_per_recording_speaker_with_a_unit_centroid(grown_run):
    output = grown_run["output"]
    speakers = pq.read_table(output / "speakers")
    assert speakers.schema.field("centroid").type.list_size == 256
    segments = pq.read_table(output / "segments").to_pylist()
    assert sorted(zip(speakers["uniq_id"].to_pylist(), speakers["speaker"].to_pylist())) == sorted(
        {(s["uniq_id"], s["speaker"]) for s in segments}
    )
    vectors = np.stack(speakers["centroid"].to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert min(speakers["num_embeddings"].to_pylist()) > 0
    row = speakers.slice(0, 1).to_pylist()[0]
    turns = [s for s in segments if (s["uniq_id"], s["speaker"]) == (row["uniq_id"], row["speaker"])]
    assert row["speech_seconds"] == pytest.approx(
        sum(t["end"] - t["start"] for t in turns), abs=1e-6
    )  # one speaker's turns never overlap
    summary = json.loads((output / "summary.json").read_text())
    assert summary["speakers"] == {"rows": speakers.num_rows, "embedding_size": 256}


def test_global_ids_are_right_on_a_corpus_with_recurring_speakers(grown_run):
    output, manifest = grown_run["output"], grown_run["manifest"]
    truth = dominant_reference(output, manifest)
    links = pq.read_table(output / "speaker_links.parquet").to_pylist()
    by_global: dict[str, Counter] = defaultdict(Counter)
    for link in links:
        if link["global_speaker"] is not None and (link["uniq_id"], link["speaker"]) in truth:
            by_global[link["global_speaker"]][truth[(link["uniq_id"], link["speaker"])]] += 1
    linked = sum(sum(c.values()) for c in by_global.values())
    purity = sum(c.most_common(1)[0][1] for c in by_global.values()) / linked
    by_voice: dict[str, Counter] = defaultdict(Counter)
    for global_speaker, counts in by_global.items():
        for voice, count in counts.items():
            by_voice[voice][global_speaker] += count
    coverage = sum(c.most_common(1)[0][1] for c in by_voice.values()) / linked
    assert purity >= 0.9 and coverage >= 0.9, (purity, coverage, dict(by_global))
    assert len(by_voice) == SPEC.pool_size
    assert all(0 < link["confidence"] <= 1.0001 for link in links if link["global_speaker"] is not None)


def test_no_two_speakers_of_one_recording_share_a_global_id(grown_run):
    links = pq.read_table(grown_run["output"] / "speaker_links.parquet").to_pylist()
    pairs = Counter((link["uniq_id"], link["global_speaker"]) for link in links if link["global_speaker"] is not None)
    assert pairs and max(pairs.values()) == 1


def test_linking_a_grown_run_keeps_every_global_id_and_attaches_new_speakers(grown_run):
    output = grown_run["output"]
    before = {(link["uniq_id"], link["speaker"]): link["global_speaker"] for link in grown_run["first_links"]}
    after = {
        (link["uniq_id"], link["speaker"]): link["global_speaker"]
        for link in pq.read_table(output / "speaker_links.parquet").to_pylist()
    }
    assert {key: after[key] for key in before} == before, "every earlier global id is unchanged"
    new = {key: value for key, value in after.items() if key not in before}
    assert len({uniq_id for uniq_id, _ in new}) == SPEC.num - FIRST_ROWS
    old_ids = {v for v in before.values() if v is not None}
    attached = [v for v in new.values() if v in old_ids]
    assert len(attached) >= 0.8 * len(new), "returning voices join their existing global speakers"
    second = grown_run["second"]
    assert second["kept_links"] == sum(v is not None for v in before.values())
    assert second["attached_to_existing"] == len(attached)
    # the global RTTMs of the first recordings were not rewritten, those of the new ones were
    assert second["global_rttms_written"] == SPEC.num - FIRST_ROWS
    for name, text in grown_run["first_rttms"].items():
        assert (output / "global_rttm" / name).read_text() == text


def test_global_rttms_are_the_run_turns_under_global_ids(grown_run):
    output = grown_run["output"]
    links = {
        (link["uniq_id"], link["speaker"]): link["global_speaker"]
        for link in pq.read_table(output / "speaker_links.parquet").to_pylist()
    }
    ok = [r["uniq_id"] for r in pq.read_table(output / "recordings").to_pylist() if r["status"] == "ok"]
    assert sorted(p.stem for p in (output / "global_rttm").glob("*.rttm")) == sorted(ok)
    for uniq_id in ok:
        local = read_rttm(str(output / "rttm" / f"{uniq_id}.rttm")).get(uniq_id, [])
        linked = read_rttm(str(output / "global_rttm" / f"{uniq_id}.rttm")).get(uniq_id, [])
        expected = [
            (t.start, t.end, links.get((uniq_id, t.speaker)) or f"unlinked/{uniq_id}/{t.speaker}") for t in local
        ]
        assert [(t.start, t.end, t.speaker) for t in linked] == expected


def test_global_speakers_table_counts_recordings_and_hours(grown_run):
    output = grown_run["output"]
    table = pq.read_table(output / "global_speakers.parquet").to_pylist()
    links = [
        link
        for link in pq.read_table(output / "speaker_links.parquet").to_pylist()
        if link["global_speaker"] is not None
    ]
    assert sorted(r["global_speaker"] for r in table) == sorted({link["global_speaker"] for link in links})
    assert sum(r["recordings"] for r in table) == len(links)
    speech = {(r["uniq_id"], r["speaker"]): r["speech_seconds"] for r in pq.read_table(output / "speakers").to_pylist()}
    assert sum(r["hours"] for r in table) == pytest.approx(
        sum(speech[(link["uniq_id"], link["speaker"])] for link in links) / 3600
    )
    assert all(len(r["centroid"]) == 256 for r in table)


def test_relinking_an_unchanged_run_changes_nothing(grown_run):
    from pipeline.linking.run import link_run
    from pipeline.models.registry import linking_threshold

    output = grown_run["output"]
    before = pq.read_table(output / "speaker_links.parquet")
    summary = link_run(str(output))
    assert summary["threshold"] == linking_threshold(GE2E) == 0.84, (
        "without --threshold, the one the run's model declares"
    )
    assert summary["threshold_source"] == "declared by model 'ge2e', chosen on its dev split"
    assert summary["global_rttms_written"] == 0 and summary["new_global_speakers"] == 0
    assert pq.read_table(output / "speaker_links.parquet").equals(before)


def test_evaluate_global_scores_one_corpus_timeline_from_the_command_line(grown_run, capsys):
    from pipeline.cli import main

    output = grown_run["output"]
    assert main(["evaluate", "--output", str(output), "--global"]) == 0
    printed = capsys.readouterr().out
    assert "global DER" in printed and "per-recording DER" in printed and "purity" in printed
    summary = json.loads((output / "eval" / "global_summary.json").read_text())
    assert summary["recordings"] == SPEC.num
    assert summary["global_der"] >= summary["per_recording_der"] - 1e-9, (
        "one mapping for the corpus can only add errors"
    )
    assert summary["der_increase"] <= 0.05
    assert summary["link_purity"] >= 0.9 and summary["link_coverage"] >= 0.9
    table = pq.read_table(output / "eval" / "global_recordings.parquet")
    assert table.num_rows == SPEC.num


def test_link_speakers_from_the_command_line_and_its_one_line_errors(grown_run, tmp_path, capfd):
    from pipeline.cli import main

    output = grown_run["output"]
    assert main(["link-speakers", "--output", str(output), "--min-speech-seconds", "2"]) == 0
    printed = capfd.readouterr().out
    assert "global speakers" in printed
    assert "threshold 0.84 (declared by model 'ge2e', chosen on its dev split)" in printed
    assert main(["link-speakers", "--output", str(output), "--threshold", "0.84"]) == 0
    assert "threshold 0.84 (given by the caller)" in capfd.readouterr().out
    assert main(["link-speakers", "--output", str(output), "--threshold", "3"]) == 2
    assert "error: --threshold must be a cosine similarity" in capfd.readouterr().err
    with pytest.raises(SystemExit) as usage:  # argparse's own exit
        main(["link-speakers", "--output", str(output), "--threshold", "three"])
    assert usage.value.code == 2 and "'three' is neither a number nor 'estimate'" in capfd.readouterr().err
    assert main(["link-speakers", "--output", str(tmp_path / "nothing")]) == 2
    assert "holds no corpus run" in capfd.readouterr().err


def test_a_threshold_learnt_from_the_corpus_is_printed_with_its_pairs_and_links_it(grown_run, tmp_path, capfd):
    """`--threshold estimate` (what a model that declares no threshold gets): learnt from the run's own
    pairs of speakers of one recording, said so, and scored within the bounds the declared one is held to."""
    import shutil

    from pipeline.cli import main

    output = shutil.copytree(grown_run["output"], tmp_path / "run")  # the module's other tests keep their links
    assert main(["link-speakers", "--output", str(output), "--threshold", "estimate", "--fresh"]) == 0
    printed = capfd.readouterr().out
    state = json.loads((output / "linking.json").read_text())
    assert state["threshold_pairs"] >= 10 and 0.5 < state["threshold"] < 1.0
    assert (
        f"threshold {state['threshold']} (estimated from this corpus: the 95th percentile of "
        f"{state['threshold_pairs']} similarities between two speakers of one recording; asked for" in printed
    )
    assert main(["evaluate", "--output", str(output), "--global"]) == 0
    summary = json.loads((output / "eval" / "global_summary.json").read_text())
    assert summary["der_increase"] <= 0.05 and summary["link_purity"] >= 0.9


def test_a_model_without_embeddings_leaves_speakers_empty_and_says_so(local_ray, tmp_path, capfd):
    import pipeline
    from pipeline.cli import main

    manifest = recurring_manifest(
        "test",
        str(tmp_path / "corpus"),
        RecurringSplit(num=2, pool_size=2, speakers_range=(2, 2), duration_range=(20.0, 20.0), seed=5),
    )
    output = tmp_path / "run"
    summary = pipeline.run_corpus(manifest, str(output), model="tests.plugin_models:energy_diarizer")
    assert (
        summary["ok"] == 2
        and summary["speakers"]["rows"] == 0
        and "no speaker embeddings" in summary["speakers"]["note"]
    )
    assert not list((output / "speakers").glob("*.parquet")) if (output / "speakers").exists() else True
    assert main(["link-speakers", "--output", str(output)]) == 2
    assert "gives no speaker embeddings" in capfd.readouterr().err
