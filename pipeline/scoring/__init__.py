"""Scoring against reference RTTMs: the metrics (pyannote.metrics, NeMo's presets) and the scoring of
a corpus run's outputs."""
