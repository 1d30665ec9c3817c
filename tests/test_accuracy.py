"""DER regression on real meetings (AMI excerpts) and on simulated conversations with exact labels.

Thresholds sit a little above what the default model reaches (BENCHMARKS.md); scoring is NeMo's
"fair" preset: collar 0.25 s around reference boundaries, overlap scored, UEM honoured."""

import pytest

from pipeline.benchmark import diarize_and_score
from pipeline.simulate import SimulationConfig, write_corpus

from helpers import AMI, FAR_FIELD_YAML, cpu_model

pytestmark = pytest.mark.slow


def test_ami_excerpts_der_with_estimated_speaker_count():
    _, overall = diarize_and_score(str(AMI / "manifest.jsonl"), cpu_model(), str(FAR_FIELD_YAML), estimate_speakers=True)
    print("AMI", overall)
    assert overall["der"] < 0.35


def test_simulated_conversations_der(tmp_path_factory):
    corpus = tmp_path_factory.mktemp("simulated")
    manifest = write_corpus(str(corpus), 20, SimulationConfig(overlap_ratio=0.10), speakers_range=(2, 5),
                            duration_range=(60, 180), seed=0)
    _, overall = diarize_and_score(manifest, cpu_model(), estimate_speakers=True)
    print("simulated", overall)
    assert overall["der"] < 0.08
