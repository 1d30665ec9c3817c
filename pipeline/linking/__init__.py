"""Corpus-wide speaker linking: the algorithm (`algorithm`) and the linking of a run's output (`run`)."""

# Speakers with less speech get no global id (`link-speakers --min-speech-seconds`): here, so that the
# CLI's parser reads it without importing Ray.
DEFAULT_MIN_SPEECH_SECONDS = 2.0
# `--threshold estimate`: learn the threshold from the corpus even where the model declares one
# (`pipeline.linking.threshold`); here for the same reason.
ESTIMATE = "estimate"
