"""DER regression on the test split: AMI `trn05`-`trn09`, the first half of its simulated
conversations (10 of 20, 16 min: the whole split is the benchmark's, docs/RESULTS.md) and its short
calls, from the LibriSpeech speakers of the test half (`benchmarks.splits`). No threshold or
parameter was chosen on these files: the models' defaults were tuned on the dev split
(`python -m benchmarks.tuning`).

Limits sit a little above what the models reach on these files; scoring is NeMo's "fair" preset:
collar 0.25 s around reference boundaries, overlap scored, UEM honoured."""

from pathlib import Path

import pytest
from helpers import cpu_model, ge2e_model

from benchmarks.benchmark import diarize_and_score
from benchmarks.splits import split_manifests

pytestmark = pytest.mark.slow

# Measured on these files (this test's own prints, 2026-12-07 on 30799df): default 26.9 % (AMI, known; missed
# speech 14.0 %, false alarm 0.5 %), 7.2 % (the first 10 simulated, estimated; missed 0.8 %, 7 / 10 counts),
# 5.1 % and 18 / 20 (short calls, estimated); ge2e 7.1 % and 9 / 10 (the first 10 simulated, estimated; 8.9 % before
# its count became the pruning values' majority, 2026-12-08). A model that gets
# one more count wrong fails; so does a detector that misses a point more of AMI's speech or adds a point of
# false alarm, or misses more than issue 28's 3 % of the simulated conversations' speech.
AMI_KNOWN_LIMIT = 0.28
AMI_MISSED_LIMIT = 0.15
AMI_FALSE_ALARM_LIMIT = 0.015
SIMULATED_ROWS = 10
SIMULATED_ESTIMATED_LIMIT = 0.08
SIMULATED_MISSED_LIMIT = 0.03
SIMULATED_COUNTS_RIGHT = 0.70
SHORT_ESTIMATED_LIMIT = 0.07
SHORT_COUNTS_RIGHT = 0.85
GE2E_SIMULATED_ESTIMATED_LIMIT = 0.08
GE2E_SIMULATED_COUNTS_RIGHT = 0.80


@pytest.fixture(scope="module")
def test_split(tmp_path_factory):
    folder = tmp_path_factory.mktemp("splits")
    manifests = split_manifests("test", str(folder), corpora=("ami", "simulated", "short"))
    simulated = Path(manifests["simulated"])
    first = simulated.read_text(encoding="utf-8").splitlines(keepends=True)[:SIMULATED_ROWS]
    manifests["simulated"] = str(simulated.with_name("first.jsonl"))
    Path(manifests["simulated"]).write_text("".join(first), encoding="utf-8")
    return manifests


def test_default_model_on_ami_test_meetings_with_known_counts(test_split):
    _, overall = diarize_and_score(test_split["ami"], cpu_model())
    print("AMI test, known count", overall)
    assert overall["der"] < AMI_KNOWN_LIMIT
    assert overall["missed_speech"] < AMI_MISSED_LIMIT
    assert overall["false_alarm"] < AMI_FALSE_ALARM_LIMIT


def test_default_model_on_simulated_test_conversations_with_estimated_counts(test_split):
    _, overall = diarize_and_score(test_split["simulated"], cpu_model(), estimate_speakers=True)
    print("simulated test, estimated count", overall)
    assert overall["der"] < SIMULATED_ESTIMATED_LIMIT
    assert overall["missed_speech"] <= SIMULATED_MISSED_LIMIT
    assert overall["speaker_count_accuracy"] >= SIMULATED_COUNTS_RIGHT


def test_default_model_on_short_test_calls_with_estimated_counts(test_split):
    _, overall = diarize_and_score(test_split["short"], cpu_model(), estimate_speakers=True)
    print("short test calls, estimated count", overall)
    assert overall["der"] < SHORT_ESTIMATED_LIMIT
    assert overall["speaker_count_accuracy"] >= SHORT_COUNTS_RIGHT


def test_ge2e_model_on_simulated_test_conversations_with_estimated_counts(test_split):
    _, overall = diarize_and_score(test_split["simulated"], ge2e_model(), estimate_speakers=True)
    print("ge2e, simulated test, estimated count", overall)
    assert overall["der"] < GE2E_SIMULATED_ESTIMATED_LIMIT
    assert overall["speaker_count_accuracy"] >= GE2E_SIMULATED_COUNTS_RIGHT
