from pathlib import Path

import pytest

from pipeline.io.rttm import Turn, read_rttm, read_uem
from pipeline.scoring.metrics import SCORING_PRESETS, ScoringItem, score_corpus, score_recording

AMI = Path(__file__).resolve().parents[2] / "shared" / "data" / "ami-excerpts"

# Reference: A speaks 0-10, B speaks 10-20 (20 s of reference speech).
REFERENCE = [Turn(0.0, 10.0, "A"), Turn(10.0, 20.0, "B")]
# Hypothesis: x maps to A and y to B (the optimal mapping), with
#   confusion 9-10 (y while A speaks)    1 s
#   missed    18-20 (nobody while B)     2 s
#   false alarm 20-21 (y, no reference)  1 s
HYPOTHESIS = [Turn(0.0, 9.0, "x"), Turn(9.0, 18.0, "y"), Turn(20.0, 21.0, "y")]


def seconds_of_errors(score):
    return score["missed_speech_sec"], score["false_alarm_sec"], score["confusion_sec"]


def test_der_without_collar_is_worked_out_by_hand():
    # DER = (1 + 2 + 1) / 20 = 0.2
    score = score_recording(REFERENCE, HYPOTHESIS, collar=0.0)
    assert score["der"] == pytest.approx(0.2)
    assert score["reference_speech_sec"] == pytest.approx(20.0)
    assert seconds_of_errors(score) == pytest.approx((2.0, 1.0, 1.0))
    assert (score["missed_speech"], score["false_alarm"], score["confusion"]) == pytest.approx((0.1, 0.05, 0.05))


def test_collar_is_plus_minus_seconds_around_reference_boundaries():
    # collar 0.25 removes 0-0.25, 9.75-10.25 and 19.75-20.25 (reference boundaries 0, 10, 20):
    #   reference 20 - 0.25 - 0.5 - 0.25 = 19 s
    #   confusion 9-9.75 = 0.75, missed 18-19.75 = 1.75, false alarm 20.25-21 = 0.75
    #   DER = 3.25 / 19
    score = score_recording(REFERENCE, HYPOTHESIS, collar=0.25)
    assert score["reference_speech_sec"] == pytest.approx(19.0)
    assert seconds_of_errors(score) == pytest.approx((1.75, 0.75, 0.75))
    assert score["der"] == pytest.approx(3.25 / 19.0)


def test_jer_is_worked_out_by_hand():
    # A~x: union 0-10 = 10 s, missed 1 s, no false alarm        -> 1/10
    # B~y: union 9-21 = 12 s, y outside B 2 s, B outside y 2 s  -> 4/12
    # JER = mean over reference speakers = (0.1 + 1/3) / 2
    assert score_recording(REFERENCE, HYPOTHESIS, collar=0.0)["jer"] == pytest.approx((0.1 + 1 / 3) / 2)


def test_uem_limits_what_is_scored():
    # Scored 0-15: reference 15 s (A 10, B 5); only the 1 s confusion remains.
    score = score_recording(REFERENCE, HYPOTHESIS, uem_regions=[(0.0, 15.0)], collar=0.0)
    assert score["reference_speech_sec"] == pytest.approx(15.0)
    assert score["der"] == pytest.approx(1.0 / 15.0)


def test_speaker_counts_are_those_with_speech_in_the_scored_region():
    hypothesis = HYPOTHESIS + [Turn(12.0, 13.0, "z")]
    score = score_recording(REFERENCE, hypothesis, collar=0.0)
    assert (score["reference_speakers"], score["hypothesis_speakers"], score["speaker_count_error"]) == (2, 3, 1)
    within = score_recording(REFERENCE, hypothesis, uem_regions=[(0.0, 5.0)], collar=0.0)
    assert (within["reference_speakers"], within["hypothesis_speakers"], within["speaker_count_error"]) == (1, 1, 0)


def test_presets_score_or_skip_overlap():
    # A 0-10 and B 5-15 overlap on 5-10; the hypothesis misses B there (5 s of 20 s).
    reference = [Turn(0.0, 10.0, "A"), Turn(5.0, 15.0, "B")]
    hypothesis = [Turn(0.0, 10.0, "x"), Turn(10.0, 15.0, "y")]
    assert score_recording(reference, hypothesis, **SCORING_PRESETS["full"])["der"] == pytest.approx(0.25)
    assert score_recording(reference, hypothesis, **SCORING_PRESETS["forgiving"])["der"] == pytest.approx(0.0)


def test_corpus_der_sums_seconds_rather_than_averaging_ratios():
    # Recording 1: 4 s of error in 20 s. Recording 2: 5 s of reference all missed.
    # Overall (4 + 5) / (20 + 5) = 0.36, where the mean of ratios would be (0.2 + 1.0) / 2 = 0.6.
    items = [
        ScoringItem("one", REFERENCE, HYPOTHESIS),
        ("two", [Turn(0.0, 5.0, "C")], []),
    ]
    per_recording, overall = score_corpus(items, collar=0.0)
    assert [row["der"] for row in per_recording] == pytest.approx([0.2, 1.0])
    assert overall["der"] == pytest.approx(0.36)
    assert overall["reference_speech_sec"] == pytest.approx(25.0)
    assert overall["missed_speech_sec"] == pytest.approx(7.0)
    assert overall["recordings"] == 2
    assert overall["speaker_count_accuracy"] == pytest.approx(0.5)
    assert overall["mean_abs_speaker_count_error"] == pytest.approx(0.5)


@pytest.mark.parametrize("preset", sorted(SCORING_PRESETS))
def test_ami_reference_scored_against_itself_is_perfect(preset):
    turns = read_rttm(str(AMI / "trn01.rttm"))["trn01"]
    uem = read_uem(str(AMI / "trn01.uem"))["trn01"]
    score = score_recording(turns, turns, uem_regions=uem, uri="trn01", **SCORING_PRESETS[preset])
    assert score["der"] == 0.0 and score["jer"] == 0.0 and score["speaker_count_error"] == 0
    assert score["reference_speech_sec"] > 0
